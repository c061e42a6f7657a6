//! gpufleet core: the VM domain and its state machine, the use cases, the ports they
//! run over and the adapters that implement those ports. Nothing here knows about Lambda
//! or HTTP; the `functions` crate turns requests into use-case calls.

// User input is never sliced by byte index: a multi-byte character at the cut panics.
#![warn(clippy::string_slice)]

pub mod adapters;
pub mod config;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod ports;
pub mod state;
pub mod usecases;

#[cfg(test)]
mod parser_properties;

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;

pub use error::{Error, Result};
pub use state::AppState;
