//! `GET /openapi.json` (anyone): the OpenAPI 3.1 document of every route.

use http::{header, HeaderValue, StatusCode};
use lambda_http::Body;
use shared::AppState;

use crate::http::{Principal, Request, Response};
use crate::openapi::{document_json, ApiDoc, OpenApiDocument};

pub fn api() -> ApiDoc {
    ApiDoc::new("This document: every route, its credentials, bodies and answers")
        .answers::<OpenApiDocument>(200, "The OpenAPI 3.1 document.")
}

pub async fn handle(_state: AppState, _principal: Principal, _req: Request) -> Response {
    let mut resp = http::Response::new(Body::Text(document_json().to_string()));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
