//! Ctrl-C stops the generation in progress, as in llama.cpp's interactive mode: what was
//! generated stays, and `chat` goes back to its prompt; in `train` it ends the run after
//! the step in progress, with a checkpoint. With nothing in progress it ends the program as
//! usual.

use std::sync::{Mutex, Once, PoisonError};
use synapse_inference::generation::CancelHandle;

/// The handle of the generation in progress, if any.
static CURRENT: Mutex<Option<CancelHandle>> = Mutex::new(None);

/// A cancellation handle that Ctrl-C triggers until the returned guard is dropped (a
/// second Ctrl-C ends the program).
pub fn generation() -> (CancelHandle, Guard) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Without a handler (another one is installed, or none can be), Ctrl-C keeps
        // its default: it ends the program.
        let _ = ctrlc::set_handler(|| {
            let current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
            match current.as_ref() {
                Some(handle) if !handle.is_cancelled() => handle.cancel(),
                // 128 + SIGINT, as a shell reports a program that Ctrl-C ended.
                _ => std::process::exit(130),
            }
        });
    });
    let handle = CancelHandle::new();
    *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle.clone());
    (handle, Guard)
}

/// Ends the generation's claim on Ctrl-C.
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
