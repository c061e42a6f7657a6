//! Reading a request: bodies (JSON, forms) with their limits, path and query parameters,
//! credentials as presented, cookies, and where the request came from.

use std::collections::HashMap;

use http::{header, HeaderValue};
use lambda_http::RequestExt;
use serde::de::DeserializeOwned;

use super::{ApiError, Request, Response};

/// Largest body any endpoint accepts. VM reports and forms are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The cookie holding a participant's seat token.
pub const SEAT_COOKIE: &str = "gpufleet_seat";

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request reached us over https (API Gateway always; the local server only
/// behind a TLS proxy that says so).
pub fn is_https(req: &Request) -> bool {
    req.uri().scheme_str() == Some("https")
        || req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Sets the seat cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's
/// request carries it), Secure over https, kept for a week.
pub fn set_seat_cookie(req: &Request, resp: &mut Response, token: &str) {
    let secure = if is_https(req) { "; Secure" } else { "" };
    let value =
        format!("{SEAT_COOKIE}={token}; Path=/; Max-Age=604800; HttpOnly; SameSite=Strict{secure}");
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The seat credential of a request: the token in the path (a seat link), else the seat
/// cookie; with the base path the seat page's forms post to.
pub fn seat_credential(req: &Request) -> Option<(String, String)> {
    if let Some(token) = req.path_parameters().first("token") {
        return Some((token.to_string(), format!("/seat/{token}")));
    }
    cookie(req, SEAT_COOKIE).map(|t| (t.to_string(), "/seat".to_string()))
}

/// The site's own base URL as the browser sees it (for links shown to be copied).
pub fn site_url(req: &Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if is_https(req) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn body_bytes(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(bytes)
}

/// Whether the request declares its body as JSON (`application/json`, any parameters).
pub fn declares_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses a JSON body. A body not declared as JSON is a 415; bodies that are not JSON, or
/// JSON of the wrong shape, are a 400 naming the problem.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    if !declares_json(req) {
        return Err(ApiError::NotJson);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
    // Every body is an object: serde would also fill a struct from a positional array.
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Parses an `application/x-www-form-urlencoded` body into its fields.
pub fn form_body(req: &Request) -> Result<HashMap<String, String>, ApiError> {
    let bytes = body_bytes(req)?;
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|_| ApiError::bad_request("the form body could not be parsed"))
}

/// A required, non-empty string field of a JSON body (400 naming it otherwise).
pub fn body_field(body: &serde_json::Value, name: &str) -> Result<String, ApiError> {
    text_field(body.get(name).and_then(serde_json::Value::as_str), name)
}

/// A required string field of a typed body, checked like `body_field`: trimmed, non-empty,
/// at most 256 bytes (400 naming it otherwise).
pub fn text_field(value: Option<&str>, name: &str) -> Result<String, ApiError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request(format!("{name} is required (a string)")))
}

/// A required, non-empty field of a JSON body.
pub fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::bad_request(format!("{name} is required"))),
    }
}

pub fn path_param(req: &Request, name: &str) -> Result<String, ApiError> {
    req.path_parameters()
        .first(name)
        .map(str::to_string)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("{name} is required in the path")))
}

/// The token of `Authorization: Bearer <token>`, if present.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether the client asked for JSON (`Accept: application/json`).
pub fn wants_json(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A query-string parameter, if present.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters()
        .first(name)
        .map(str::to_string)
}

/// Formats epoch milliseconds as RFC 3339 UTC.
pub use shared::domain::rfc3339;

/// The client's IP: API Gateway's `sourceIp` (the TCP peer it saw; the local server fills
/// it from the connection). `X-Forwarded-For` is never trusted: a client can write it.
pub fn client_ip(req: &Request) -> String {
    match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx
            .http
            .source_ip
            .clone()
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        _ => "unknown".into(),
    }
}

/// The `Idempotency-Key` header, if sent (its length and characters are checked by the
/// idempotency module).
pub fn idempotency_key(req: &Request) -> Result<Option<&str>, ApiError> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII")),
    }
}

/// A string field the server trims, then requires to be non-empty and at most 256 bytes
/// (`text_field`, `body_field`, a VM route's hostname): its schema, written once for every
/// body that has one.
pub struct RequiredText;

impl utoipa::PartialSchema for RequiredText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(256))
            // Not only whitespace (Rust's `char::is_whitespace`): the server trims.
            .pattern(Some(
                "[^\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
            ))
            .description(Some(
                "Not blank; at most 256 characters (256 bytes after trimming on the server).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for RequiredText {}
