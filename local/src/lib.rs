//! Local mode and the VM agent.
//!
//! `gpufleet serve` runs every endpoint of `functions::routes::ROUTES` in one process on the
//! SQLite store, with agent processes as VMs. `gpufleet agent` is what runs on each VM, in
//! local mode and (from its user_data) in the cloud.

// User input is never sliced by byte index: a multi-byte character at the cut panics.
#![warn(clippy::string_slice)]

pub mod agent;
pub mod cli;
pub mod connections;
pub mod desktop;
pub mod object_routes;
pub mod remote;
pub mod seed;
pub mod server;
