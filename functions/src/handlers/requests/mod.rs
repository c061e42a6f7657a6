//! Asynchronous GPU provisioning requests (API key): create, list, read, release.

pub mod create_request;
pub mod get_request;
pub mod list_requests;
pub mod release_request;
