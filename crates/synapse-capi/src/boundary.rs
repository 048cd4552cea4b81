//! What every entry point shares: status codes, the per-thread error message, the panic
//! guard, and reading and writing the caller's memory.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use synapse_inference::error::ErrorKind;

/// What a call returns: SYNAPSE_OK, or why it failed (synapse_last_error() says more).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum synapse_status {
    SYNAPSE_OK = 0,
    /// A NULL or freed handle, a NULL pointer where one is needed, invalid UTF-8, a token
    /// id outside the vocabulary, a session in use by another thread.
    SYNAPSE_INVALID_ARGUMENT = 1,
    /// A file could not be read (or the default model fetched).
    SYNAPSE_IO = 2,
    /// A malformed model, tokenizer or chat template.
    SYNAPSE_BAD_FORMAT = 3,
    /// A well-formed model that Synapse does not support (an architecture, a tensor type).
    SYNAPSE_UNSUPPORTED = 4,
    /// The tokens do not fit the session's context.
    SYNAPSE_CONTEXT_FULL = 5,
    /// The work was cancelled.
    SYNAPSE_CANCELLED = 6,
    /// A bug in Synapse (a caught panic): the message says where.
    SYNAPSE_INTERNAL = 7,
    /// The output buffer is too small: *n_out holds the capacity needed.
    SYNAPSE_BUFFER_TOO_SMALL = 8,
}

use synapse_status::*;

/// UTF-8 text of `len` bytes at `data` (no terminator needed).
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct synapse_string {
    pub data: *const c_char,
    pub len: usize,
}

/// Why a call failed: its status and the message `synapse_last_error` will give.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: synapse_status,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            status: SYNAPSE_INVALID_ARGUMENT,
            message: message.into(),
        }
    }
}

impl From<synapse_inference::Error> for Failure {
    fn from(e: synapse_inference::Error) -> Failure {
        let status = match e.kind() {
            ErrorKind::InvalidArgument => SYNAPSE_INVALID_ARGUMENT,
            ErrorKind::Io => SYNAPSE_IO,
            ErrorKind::BadFormat => SYNAPSE_BAD_FORMAT,
            ErrorKind::Unsupported => SYNAPSE_UNSUPPORTED,
            ErrorKind::ContextFull => SYNAPSE_CONTEXT_FULL,
            ErrorKind::Cancelled => SYNAPSE_CANCELLED,
            _ => SYNAPSE_INTERNAL,
        };
        Failure {
            status,
            message: e.to_string(),
        }
    }
}

pub(crate) type Outcome<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The message of the last call on this thread that failed ("" if none has), as a
/// NUL-terminated string that stays valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn synapse_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an entry point's body: a panic becomes SYNAPSE_INTERNAL instead of crossing the
/// boundary, and a failure's message is kept for `synapse_last_error`.
pub(crate) fn guard(body: impl FnOnce() -> Outcome) -> synapse_status {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Failure {
            status: SYNAPSE_INTERNAL,
            message: format!("internal error (a bug in Synapse): {what}"),
        })
    });
    match outcome {
        Ok(()) => SYNAPSE_OK,
        Err(failure) => {
            let message = failure.message.replace('\0', "\\0");
            LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(message).unwrap_or_default());
            failure.status
        }
    }
}

/// The caller's `len` bytes at `data` as UTF-8 (`what` names the argument in errors).
///
/// # Safety
/// `data` is NULL (with `len` 0) or points to `len` readable bytes.
pub(crate) unsafe fn text<'a>(data: *const c_char, len: usize, what: &str) -> Outcome<&'a str> {
    // SAFETY: the caller's promise.
    let bytes = unsafe { slice(data.cast::<u8>(), len, what)? };
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::invalid(format!(
            "{what} is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })
}

/// The caller's array of `len` items at `data` (NULL allowed when `len` is 0).
///
/// # Safety
/// `data` is NULL or points to `len` initialised items that outlive the call.
pub(crate) unsafe fn slice<'a, T>(data: *const T, len: usize, what: &str) -> Outcome<&'a [T]> {
    match data.is_null() {
        true if len == 0 => Ok(&[]),
        true => Err(Failure::invalid(format!("{what} is NULL"))),
        // SAFETY: the caller's promise.
        false => Ok(unsafe { std::slice::from_raw_parts(data, len) }),
    }
}

/// The caller's output location `out`, or an error naming it when NULL.
///
/// # Safety
/// `out` is NULL or valid for writes of a `T`.
pub(crate) unsafe fn out<'a, T>(out: *mut T, what: &str) -> Outcome<&'a mut T> {
    // SAFETY: the caller's promise.
    unsafe { out.as_mut() }.ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
}

/// Copies `items` to the caller's buffer of `cap` items at `buf`, and their count to
/// `*n_out`; `terminate` adds a zero item after them (a C string's NUL), which must fit
/// too. A buffer too small leaves it untouched and sets `*n_out` to the capacity needed.
///
/// # Safety
/// `buf` is NULL (with `cap` 0) or valid for `cap` writes; `n_out` is NULL or valid.
pub(crate) unsafe fn write_out<T: Copy + Default>(
    items: &[T],
    terminate: bool,
    buf: *mut T,
    cap: usize,
    n_out: *mut usize,
) -> Outcome {
    // SAFETY: the caller's promise.
    let n_out = unsafe { out(n_out, "n_out")? };
    let needed = items.len() + usize::from(terminate);
    if cap < needed {
        *n_out = needed;
        return Err(Failure {
            status: SYNAPSE_BUFFER_TOO_SMALL,
            message: format!("the output buffer holds {cap} items; {needed} are needed"),
        });
    }
    if buf.is_null() {
        return Err(Failure::invalid("the output buffer is NULL"));
    }
    // SAFETY: `buf` has room for `cap` >= `needed` items, and cannot overlap `items`,
    // which Synapse owns.
    unsafe {
        std::ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len());
        if terminate {
            buf.add(items.len()).write(T::default());
        }
    }
    *n_out = items.len();
    Ok(())
}
