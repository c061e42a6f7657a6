//! `GET /docs` (anyone): the OpenAPI document as a page, rendered here (no remote scripts).

use http::StatusCode;
use shared::AppState;

use crate::http::{html_response, Principal, Request, Response};
use crate::openapi::{docs_page, ApiDoc};

pub fn api() -> ApiDoc {
    ApiDoc::new("The API reference as a page")
        .html(200, "Every operation, its credentials, body and answers.")
}

pub async fn handle(_state: AppState, _principal: Principal, _req: Request) -> Response {
    html_response(StatusCode::OK, docs_page().to_string())
}
