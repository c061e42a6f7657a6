//! One module per endpoint (= one Lambda function), grouped by feature. Each exposes
//! `pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response`;
//! the router (`crate::router`) has authenticated the principal for the route's access.

pub mod admin;
pub mod collect;
pub mod command_log;
pub mod docs;
pub mod instances;
pub mod keys;
pub mod network;
pub mod pools;
pub mod requests;
pub mod seats;
pub mod vm;

#[cfg(test)]
mod samples;
#[cfg(test)]
pub(crate) mod test_support;
