//! Handles given to C: boxed values whose addresses are registered while they live, so
//! that a NULL, freed or foreign pointer (a session passed as a model) is reported
//! instead of dereferenced.

use crate::boundary::{Failure, Outcome};
use std::any::{type_name, TypeId};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// The live handles: address to type.
static LIVE: Mutex<BTreeMap<usize, TypeId>> = Mutex::new(BTreeMap::new());

fn with_live<R>(f: impl FnOnce(&mut BTreeMap<usize, TypeId>) -> R) -> R {
    f(&mut LIVE.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The handle's name in messages ("synapse_model" for `synapse_model`).
fn name<T>() -> &'static str {
    type_name::<T>().rsplit("::").next().unwrap_or_default()
}

/// A new handle that owns `value`.
pub(crate) fn new<T: 'static>(value: T) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    with_live(|live| live.insert(ptr as usize, TypeId::of::<T>()));
    ptr
}

/// The value behind a live handle of type `T`.
///
/// # Safety
/// The handle is not freed while the reference is used.
pub(crate) unsafe fn get<'a, T: 'static>(ptr: *const T) -> Outcome<&'a T> {
    check::<T>(ptr)?;
    // SAFETY: `ptr` came from `new::<T>` and has not been freed (it is still registered);
    // the caller keeps it alive while the reference is used.
    Ok(unsafe { &*ptr })
}

/// Takes back a handle's value (to drop it); a NULL handle gives None.
///
/// # Safety
/// No other call uses the handle at the same time.
pub(crate) unsafe fn free<T: 'static>(ptr: *mut T) -> Outcome<Option<Box<T>>> {
    if ptr.is_null() {
        return Ok(None);
    }
    let removed = with_live(|live| {
        let live_as_t = live.get(&(ptr as usize)) == Some(&TypeId::of::<T>());
        live_as_t && live.remove(&(ptr as usize)).is_some()
    });
    if !removed {
        return Err(not_live::<T>());
    }
    // SAFETY: `ptr` came from `Box::into_raw` in `new::<T>`, and only this call removed
    // it from the registry, so it is freed once.
    Ok(Some(unsafe { Box::from_raw(ptr) }))
}

fn check<T: 'static>(ptr: *const T) -> Outcome {
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "the {} handle is NULL",
            name::<T>()
        )));
    }
    match with_live(|live| live.get(&(ptr as usize)) == Some(&TypeId::of::<T>())) {
        true => Ok(()),
        false => Err(not_live::<T>()),
    }
}

fn not_live<T>() -> Failure {
    Failure::invalid(format!(
        "not a live {} handle (already freed, or not made by Synapse)",
        name::<T>()
    ))
}
