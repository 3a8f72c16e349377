//! The V4L2 bindings of crates.io's `v4l2-sys-mit` 0.3.0 (which nokhwa's Linux backend uses
//! through `v4l`), generated once per architecture with the same bindgen version instead of at
//! build time, so that building facelab needs no libclang. `README.md` beside this crate has the
//! command that regenerates them.
#![allow(clippy::all)]
#![allow(deref_nullptr)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(non_upper_case_globals)]

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
include!("x86_64.rs");

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
include!("aarch64.rs");

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
compile_error!(
    "facelab ships V4L2 bindings for Linux on x86_64 and aarch64 only; generate them for this \
     target as vendor/v4l2-sys-mit/README.md says"
);
