//! facelab: face recognition by transfer learning, as a terminal experiment manager.
//!
//! Data flows one way:
//!
//! ```text
//! experiments/*.yaml -> config -> dataset (facedata/) -> features (backbone + cache in models/)
//!                                                            |
//!                      store (facelab.db) <- train (head) -> models/<run>/
//!                            |
//!                            +-> CLI / TUI (runs, compare, predict, capture)
//! ```
//!
//! This library holds every capability; the binary's CLI and TUI are thin layers over it and
//! the library never imports a terminal or argument-parsing crate.

pub mod align;
pub mod augment;
pub mod backbone;
pub mod bench;
pub mod capture;
pub mod config;
pub mod dataset;
pub mod error;
pub mod features;
pub mod fsutil;
pub mod image_prep;
pub mod jobs;
pub mod model;
pub mod net;
pub mod paths;
pub mod predict;
pub mod progress;
pub mod recognize;
pub mod run;
pub mod store;
pub mod sweep;
#[cfg(test)]
mod test_values;
pub mod train;
pub mod worker;
pub mod workspace;

pub use error::{Error, Result};
