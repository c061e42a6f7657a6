//! Request parsing, authentication and the one place core errors become HTTP responses.

use shared::domain::api_keys::{hash_key, looks_like_key};
use shared::usecases::requests::Caller;
use std::collections::HashMap;

use base64::Engine as _;
use http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, RequestExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use shared::{AppState, Error};

use crate::routes::{Access, Route};

pub type Request = lambda_http::Request;
pub type Response = http::Response<Body>;

/// Largest body any endpoint accepts. VM reports and forms are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a request failed, as the HTTP layer sees it.
#[derive(Debug)]
pub enum ApiError {
    /// A core error (validation, not found, conflict, internal, ...).
    Core(Error),
    /// Admin route without valid Basic credentials: 401 with a Basic challenge.
    AdminAuth,
    /// A state-changing admin request sent from another site (CSRF): 403.
    CrossSite,
    PayloadTooLarge,
    /// A JSON route got a body declared as something else (a cross-site form can send
    /// `text/plain` that happens to be JSON): 415.
    NotJson,
    /// Too many failed admin logins from this address: 429 with `Retry-After` (seconds).
    TooManyLogins(i64),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Core(e)
    }
}

pub type ApiResult = Result<Response, ApiError>;

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::Core(Error::Validation(msg.into()))
    }

    /// The same error in the offers/instances API's envelope:
    /// `{"success": false, "error": message, "code": code}` (same status and headers).
    pub fn into_envelope_response(self) -> Response {
        let mut resp = self.into_response();
        let body: serde_json::Value = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let mut envelope = json!({
            "success": false,
            "error": body.get("error").cloned().unwrap_or_else(|| json!("error")),
            "code": body.get("code").cloned().unwrap_or_else(|| json!("error")),
        });
        if let Some(id) = body.get("error_id") {
            envelope["error_id"] = id.clone();
        }
        *resp.body_mut() = Body::Text(envelope.to_string());
        resp
    }

    /// The same error in the capacity API's envelope (the pools/command-log seed):
    /// `{"status": "error", "error": message, "details": {"code": code}}`.
    pub fn into_status_envelope_response(self) -> Response {
        let mut resp = self.into_response();
        let body: serde_json::Value = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let mut details =
            json!({"code": body.get("code").cloned().unwrap_or_else(|| json!("error"))});
        if let Some(id) = body.get("error_id") {
            details["error_id"] = id.clone();
        }
        let envelope = json!({
            "status": "error",
            "error": body.get("error").cloned().unwrap_or_else(|| json!("error")),
            "details": details,
        });
        *resp.body_mut() = Body::Text(envelope.to_string());
        resp
    }

    /// The status code and the stable, safe body `{"error": message, "code": code}`.
    /// Internal errors are logged with an id; only the id reaches the client.
    pub fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            ApiError::AdminAuth => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "admin credentials required".to_string(),
            ),
            ApiError::CrossSite => (
                StatusCode::FORBIDDEN,
                "cross_site",
                "requests from another site are refused".to_string(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            ApiError::TooManyLogins(retry_after) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed admin logins from this address; retry in {retry_after} s"),
            ),
            ApiError::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json".to_string(),
            ),
            ApiError::Core(e) => match e {
                Error::Validation(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
                Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
                Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", e.to_string()),
                Error::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
                Error::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
                Error::Unavailable(m) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m.clone())
                }
                Error::NoVmAvailable => (StatusCode::CONFLICT, "no_vm_available", e.to_string()),
                Error::Internal(cause) => {
                    let id = uuid::Uuid::new_v4();
                    tracing::error!(error_id = %id, error = ?cause, "internal error");
                    let mut resp = json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": "internal error", "code": "internal", "error_id": id.to_string()}),
                    );
                    no_store(&mut resp);
                    return resp;
                }
            },
        };
        let mut resp = json_response(status, &json!({"error": message, "code": code}));
        match self {
            ApiError::AdminAuth => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"gpufleet admin\", charset=\"UTF-8\""),
                );
            }
            ApiError::Core(Error::Unauthorized) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyLogins(retry_after) => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// Like `respond`, in the capacity API's envelope: `{"status": "success", "data", "message"}`
/// and errors as `{"status": "error", "error", "details"}`.
pub async fn respond_status(
    result: impl std::future::Future<Output = Result<(serde_json::Value, &'static str), ApiError>>,
) -> Response {
    match result.await {
        Ok((data, message)) => json_response(
            StatusCode::OK,
            &json!({"status": "success", "data": data, "message": message}),
        ),
        Err(e) => e.into_status_envelope_response(),
    }
}

/// Runs a fallible handler body and renders its error, so handlers can use `?`.
pub async fn respond(result: impl std::future::Future<Output = ApiResult>) -> Response {
    match result.await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = http::Response::new(Body::Text(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn ok_json(value: serde_json::Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, &value))
}

pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut resp = http::Response::new(Body::Text(html));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Pages are self-contained: no inline framing by other sites, no remote scripts.
    resp.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Seat links carry a secret in the path: never send it to another site as a referrer.
    resp.headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("same-origin"));
    resp.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
    );
    resp
}

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

/// Pages showing secrets (PINs) or admin data must not be cached.
pub fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => format!("invalid JSON body: {e}"),
            _ => "the body is not valid JSON".to_string(),
        };
        ApiError::bad_request(what)
    })
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
    body.get(name)
        .and_then(serde_json::Value::as_str)
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

/// Checks HTTP Basic admin credentials (constant-time, see `AdminCredentials`).
pub fn require_admin(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(credentials) = credentials else {
        return Err(ApiError::AdminAuth);
    };
    let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
    if state.admin.verify(user, password) {
        Ok(())
    } else {
        Err(ApiError::AdminAuth)
    }
}

/// Whether a browser could have sent this request with credentials it attaches by itself
/// (a cached Basic login, the seat cookie) or to a page that acts on whoever submits it
/// (the claim form): then a page on another site could make the browser send it.
fn carries_ambient_credentials(access: Access, req: &Request) -> bool {
    match access {
        Access::Public | Access::Seat | Access::Admin => true,
        Access::ApiKeyOrAdmin | Access::VmOrAdmin => carries_basic(req),
        // Bearer tokens are never attached by a browser on its own.
        Access::Vm | Access::ApiKey => false,
    }
}

/// Refuses a state-changing request that a browser marks as coming from another site: a
/// `Sec-Fetch-Site` other than `same-origin`/`none`, or an `Origin` that is not exactly this
/// site (scheme and host; `null`, sent by sandboxed frames and some redirects, is refused).
/// Clients that are not browsers send neither header and pass.
pub fn require_same_origin(req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if site != "same-origin" && site != "none" {
            return Err(ApiError::CrossSite);
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !origin.eq_ignore_ascii_case(&site_url(req)) {
            return Err(ApiError::CrossSite);
        }
    }
    Ok(())
}

/// The one cross-site check, applied from the route table to every state-changing method
/// whose route a browser could call with ambient credentials.
pub fn check_route_origin(access: Access, req: &Request) -> Result<(), ApiError> {
    let safe = matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    if safe || !carries_ambient_credentials(access, req) {
        return Ok(());
    }
    require_same_origin(req)
}

/// Whether the client asked for JSON (`Accept: application/json`).
pub fn wants_json(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// Accepts either admin Basic credentials or the bearer token of VM `hostname` (for
/// routes both a VM and an admin-side forwarder may call). `NotFound` for unknown VMs.
pub async fn require_admin_or_vm(
    state: &AppState,
    req: &Request,
    hostname: &str,
) -> Result<(), ApiError> {
    if require_admin(state, req).is_ok() {
        if state.store.get_vm(hostname).await?.is_none() {
            return Err(ApiError::Core(Error::NotFound(format!("VM {hostname}"))));
        }
        return Ok(());
    }
    shared::usecases::vm_agent::authenticate(state, hostname, bearer_token(req)).await?;
    Ok(())
}

/// A query-string parameter, if present.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters()
        .first(name)
        .map(str::to_string)
}

/// Formats epoch milliseconds as RFC 3339 UTC.
pub use shared::domain::rfc3339;

/// The caller of an API-key route: `Authorization: Bearer gpf_…` of an active key.
pub async fn require_api_key(state: &AppState, req: &Request) -> Result<Caller, ApiError> {
    let presented = bearer_token(req)
        .filter(|k| looks_like_key(k))
        .ok_or(ApiError::Core(Error::Unauthorized))?;
    match state.store.api_key_by_hash(&hash_key(presented)).await? {
        Some(key) if key.is_active() => Ok(Caller::of(&key)),
        _ => Err(ApiError::Core(Error::Unauthorized)),
    }
}

/// Routes an admin may call for everyone: `None` for an admin (Basic), the key's caller
/// otherwise.
pub async fn require_api_key_or_admin(
    state: &AppState,
    req: &Request,
) -> Result<Option<Caller>, ApiError> {
    if require_admin(state, req).is_ok() {
        return Ok(None);
    }
    require_api_key(state, req).await.map(Some)
}

/// How the command log names a caller: `user:<id>` for an API key, `admin:<name>` for
/// an admin.
pub fn caller_label(state: &AppState, caller: Option<&Caller>) -> String {
    match caller {
        Some(c) => format!("user:{}", c.user_id),
        None => format!("admin:{}", state.config.admin_user),
    }
}

/// Runs a route: the cross-site check its access calls for, then its handler, with an admin
/// caller (valid Basic credentials) known to the command log; API-key callers are named by
/// the handlers that authenticate them.
pub async fn serve_route(route: &Route, state: AppState, req: Request) -> Response {
    if let Err(e) = check_route_origin(route.access, &req) {
        return e.into_response();
    }
    if let Err(e) = check_admin_login(route.access, &state, &req).await {
        // Answered before the handler, so in a body every route's envelope accepts: the
        // plain `{error, code}` plus the capacity (`status`) and v1 (`success`) markers.
        let mut resp = e.into_response();
        if let Body::Text(text) = resp.body() {
            if let Ok(mut body) = serde_json::from_str::<serde_json::Value>(text) {
                body["status"] = json!("error");
                body["success"] = json!(false);
                *resp.body_mut() = Body::Text(body.to_string());
            }
        }
        return resp;
    }
    if require_admin(&state, &req).is_ok() {
        let label = caller_label(&state, None);
        shared::domain::command_log::as_caller(label, (route.handler)(state, req)).await
    } else {
        (route.handler)(state, req).await
    }
}

/// Basic credentials on a route an admin may call: refused (429) while the client address
/// has too many recent failures, a wrong password counted (one store write) and answered
/// here, before the handler, so it costs no other write. A correct password only reads.
async fn check_admin_login(
    access: Access,
    state: &AppState,
    req: &Request,
) -> Result<(), ApiError> {
    use shared::usecases::rate_limit;
    let admits_admin = matches!(
        access,
        Access::Admin | Access::ApiKeyOrAdmin | Access::VmOrAdmin
    );
    if !admits_admin || !carries_basic(req) {
        return Ok(());
    }
    let ip = client_ip(req);
    if let Some(retry_after) = rate_limit::login_throttled(state, &ip).await? {
        return Err(ApiError::TooManyLogins(retry_after));
    }
    if require_admin(state, req).is_ok() {
        return Ok(());
    }
    match rate_limit::login_failed(state, &ip).await? {
        Some(retry_after) => Err(ApiError::TooManyLogins(retry_after)),
        None => Err(ApiError::AdminAuth),
    }
}

fn carries_basic(req: &Request) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic"))
}

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

/// Who may call an offers/instances route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Auth {
    ApiKey,
    ApiKeyOrAdmin,
}

/// A successful answer of the offers/instances API, before the envelope.
pub struct V1Ok {
    pub status: StatusCode,
    pub message: &'static str,
    pub data: Option<serde_json::Value>,
    pub replayed: bool,
}

impl V1Ok {
    pub fn ok(message: &'static str, data: serde_json::Value) -> Result<Self, ApiError> {
        Ok(V1Ok {
            status: StatusCode::OK,
            message,
            data: Some(data),
            replayed: false,
        })
    }
}

fn rate_headers(resp: &mut Response, d: &shared::usecases::rate_limit::RateDecision) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", d.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", d.reset_at.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if !d.allowed {
        if let Ok(v) = HeaderValue::from_str(&d.retry_after.to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
}

fn too_many(d: &shared::usecases::rate_limit::RateDecision) -> Response {
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "success": false,
            "error": format!("rate limit of {} requests per minute exceeded; retry in {} s", d.limit, d.retry_after),
            "code": "rate_limited",
        }),
    )
}

/// Runs an offers/instances route: the per-IP limit (counted before authentication, so
/// floods of bad keys are limited too), authentication, the per-key limit, then `body`;
/// answers in the `{success, message, data}` envelope with `X-RateLimit-*` on every
/// response.
pub async fn v1<F, Fut>(state: &AppState, req: &Request, auth: V1Auth, body: F) -> Response
where
    F: FnOnce(Option<Caller>) -> Fut,
    Fut: std::future::Future<Output = Result<V1Ok, ApiError>>,
{
    use shared::usecases::rate_limit;
    let ip_bucket = format!("ip:{}", client_ip(req));
    let mut decision =
        match rate_limit::hit(state, &ip_bucket, state.config.rate_limit_per_ip).await {
            Ok(d) => d,
            Err(e) => return ApiError::from(e).into_envelope_response(),
        };
    let outcome = async {
        if !decision.allowed {
            return Err(None);
        }
        let caller = match auth {
            V1Auth::ApiKey => Some(require_api_key(state, req).await.map_err(Some)?),
            V1Auth::ApiKeyOrAdmin => require_api_key_or_admin(state, req).await.map_err(Some)?,
        };
        if let Some(c) = &caller {
            let by_key = rate_limit::hit(
                state,
                &format!("key:{}", c.key_id),
                state.config.rate_limit_per_key,
            )
            .await
            .map_err(|e| Some(ApiError::from(e)))?;
            decision = decision.combine(by_key);
            if !decision.allowed {
                return Err(None);
            }
        }
        let label = caller_label(state, caller.as_ref());
        shared::domain::command_log::as_caller(label, body(caller))
            .await
            .map_err(Some)
    }
    .await;
    let mut resp = match outcome {
        Ok(ok) => {
            let mut envelope = json!({"success": true, "message": ok.message});
            if let Some(data) = ok.data {
                envelope["data"] = data;
            }
            let mut resp = json_response(ok.status, &envelope);
            if ok.replayed {
                resp.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            resp
        }
        Err(Some(e)) => e.into_envelope_response(),
        Err(None) => too_many(&decision),
    };
    rate_headers(&mut resp, &decision);
    resp
}
