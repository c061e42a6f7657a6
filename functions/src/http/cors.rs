//! CORS for the origins in `GPUFLEET_CORS_ORIGINS`: preflights and the headers on answers.

use http::{header, HeaderValue, StatusCode};
use lambda_http::Body;
use serde_json::json;
use shared::AppState;

use super::{json_response, Response};

/// Methods a browser may use cross-origin (the API Gateway side is configured the same in
/// `template.yaml`).
const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/// Response headers a cross-origin page may read.
const CORS_EXPOSE: &str = "Idempotent-Replayed, WWW-Authenticate, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After";

/// The request's `Origin` when it is one of `GPUFLEET_CORS_ORIGINS`.
fn allowed_origin<'a>(state: &AppState, headers: &'a http::HeaderMap) -> Option<&'a str> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    state
        .config
        .cors_origins
        .iter()
        .any(|o| o == origin || o == "*")
        .then_some(origin)
}

/// Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`), or `None`
/// when the request is not one. A disallowed origin gets a 403 without CORS headers, which
/// the browser reports as a CORS failure.
pub fn cors_preflight(
    state: &AppState,
    method: &http::Method,
    headers: &http::HeaderMap,
) -> Option<Response> {
    if method != http::Method::OPTIONS
        || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let Some(origin) = allowed_origin(state, headers) else {
        return Some(json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "this origin may not call the API", "code": "cors_origin"}),
        ));
    };
    let mut resp = http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .unwrap_or_default();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_METHODS),
    );
    // "All headers": echo what the browser asks for (a `*` would not cover Authorization).
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    Some(resp)
}

/// Adds the CORS headers to a response for an allowed `Origin`.
pub fn add_cors_headers(state: &AppState, request_headers: &http::HeaderMap, resp: &mut Response) {
    if let Some(origin) = allowed_origin(state, request_headers) {
        if let Ok(v) = HeaderValue::from_str(origin) {
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(CORS_EXPOSE),
            );
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}
