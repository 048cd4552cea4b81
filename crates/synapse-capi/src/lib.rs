//! Synapse's C ABI: `libsynapse.so`, `libsynapse.a` and `include/synapse.h` (generated
//! by cbindgen from this crate), a thin layer over `synapse-inference`. Loading,
//! tokenizing, chat templates, sessions and generation are the library's own; this crate
//! only checks what crosses the boundary (NULL and freed handles, lengths, UTF-8),
//! catches panics, and turns errors into status codes and a per-thread message.

mod boundary;
mod handle;
mod model;
mod session;

pub use boundary::{synapse_last_error, synapse_status, synapse_string};
pub use model::*;
pub use session::*;

/// The library's version ("MAJOR.MINOR.PATCH"), a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn synapse_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
