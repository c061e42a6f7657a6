//! The HTTP edge, in pieces the router (`crate::router`) puts together: reading requests
//! (`parse`), who is calling (`auth`), errors and envelopes (`errors`), CORS (`cors`) and
//! rate limits (`rate_limits`). Nothing here knows the route table.

mod auth;
mod cors;
mod errors;
mod parse;
mod rate_limits;

pub use auth::*;
pub use cors::*;
pub use errors::*;
pub use parse::*;
pub use rate_limits::*;

pub type Request = lambda_http::Request;
pub type Response = http::Response<lambda_http::Body>;
