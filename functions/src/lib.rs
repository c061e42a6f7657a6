//! HTTP handlers, written once. Each is `async fn handle(AppState, Request) -> Response`
//! over `lambda_http` types: the Lambda artifact runs one of them behind API Gateway (the one
//! its `GPUFLEET_FUNCTION` names), and the local server runs all of them behind one listener
//! via [`routes::ROUTES`].

// User input is never sliced by byte index: a multi-byte character at the cut panics.
#![warn(clippy::string_slice)]

pub mod catalog;
pub mod handlers;
pub mod http;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod logs_subscriber;
pub mod openapi;
pub mod pages;
#[cfg(test)]
mod parser_properties;
pub mod provision;
pub mod router;
pub mod routes;
pub mod telemetry;
pub mod template;
pub mod views;

pub use http::{Request, Response};
