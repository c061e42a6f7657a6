//! Errors and envelopes: the one place core errors become HTTP responses, in the envelope
//! the route declares (plain `{error, code}`, the v1 `{success, ...}` or the capacity API's
//! `{status, ...}`), and the response builders handlers share.

use http::{header, HeaderValue, StatusCode};
use lambda_http::Body;
use serde::Serialize;
use serde_json::json;
use shared::Error;
use utoipa::ToSchema;

use super::{Response, MAX_BODY_BYTES};

/// The body shape of a route's answers, declared in the route table: errors raised before
/// the handler (authentication, origin, rate limits) are rendered in it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `{"error", "code"}` on failure; success bodies are the handler's own (JSON or HTML).
    Plain,
    /// The offers/instances API: `{"success", "message", "data"}`, rate-limited with
    /// `X-RateLimit-*` headers on every answer.
    Success,
    /// The capacity API: `{"status": "success", "data", "message"}` /
    /// `{"status": "error", "error", "details"}`.
    Status,
}

/// An error answer: `error` says what went wrong (for people), `code` what kind (for code).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// `invalid_request`, `unauthorized`, `not_found`, `conflict`, `rate_limited`, ...
    pub code: String,
    /// Internal errors only: the id under which the cause was logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

/// An error of the offers/instances API.
#[derive(Debug, Serialize, ToSchema)]
pub struct V1ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

/// An error of the capacity API.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusErrorBody {
    /// Always `error`.
    pub status: &'static str,
    pub error: String,
    pub details: ErrorDetails,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetails {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

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
    /// The body did not arrive within this many seconds (the local server; API Gateway
    /// times out slow clients itself): 408.
    SlowBody(u64),
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
        self.render(Envelope::Success)
    }

    /// The same error in the capacity API's envelope:
    /// `{"status": "error", "error": message, "details": {"code": code}}`.
    pub fn into_status_envelope_response(self) -> Response {
        self.render(Envelope::Status)
    }

    /// The status code and the stable, safe body `{"error": message, "code": code}`.
    pub fn into_response(self) -> Response {
        self.render(Envelope::Plain)
    }

    /// The error in `envelope`: its status, the safe body and the headers it needs.
    /// Internal errors are logged with an id; only the id reaches the client.
    pub fn render(self, envelope: Envelope) -> Response {
        let mut error_id = None;
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
            ApiError::SlowBody(secs) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive within {secs} s"),
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
                Error::RateLimited { message, .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    message.clone(),
                ),
                Error::Internal(cause) => {
                    let id = uuid::Uuid::new_v4().to_string();
                    tracing::error!(error_id = %id, error = ?cause, "internal error");
                    error_id = Some(id);
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error".to_string(),
                    )
                }
            },
        };
        let code = code.to_string();
        let mut resp = match envelope {
            Envelope::Plain => typed_json_response(
                status,
                &ErrorBody {
                    error: message,
                    code,
                    error_id: error_id.clone(),
                },
            ),
            Envelope::Success => typed_json_response(
                status,
                &V1ErrorBody {
                    success: false,
                    error: message,
                    code,
                    error_id: error_id.clone(),
                },
            ),
            Envelope::Status => typed_json_response(
                status,
                &StatusErrorBody {
                    status: "error",
                    error: message,
                    details: ErrorDetails {
                        code,
                        error_id: error_id.clone(),
                    },
                },
            ),
        };
        if error_id.is_some() {
            no_store(&mut resp);
        }
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
            ApiError::TooManyLogins(retry_after)
            | ApiError::Core(Error::RateLimited { retry_after, .. }) => {
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
    typed_json_response(status, value)
}

/// A JSON answer rendered from a typed value (the type the OpenAPI document names).
pub fn typed_json_response(status: StatusCode, value: &impl Serialize) -> Response {
    let mut resp =
        http::Response::new(Body::Text(serde_json::to_string(value).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A typed answer as the `data` of an envelope (`respond_v1`, `respond_status`).
pub fn data(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// `200` with a typed JSON answer.
pub fn ok_typed(value: &impl Serialize) -> ApiResult {
    Ok(typed_json_response(StatusCode::OK, value))
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

/// Pages showing secrets (PINs) or admin data must not be cached.
pub fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

/// Like `respond`, in the v1 envelope `{"success": true, "message", "data"}`.
pub async fn respond_v1(
    result: impl std::future::Future<Output = Result<V1Ok, ApiError>>,
) -> Response {
    match result.await {
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
        Err(e) => e.into_envelope_response(),
    }
}
