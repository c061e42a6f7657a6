//! Request rate limits of the offers/instances API: one bucket per client address, counted
//! before authentication so floods of bad keys are limited too, and one per API key.

use http::{header, HeaderValue, StatusCode};
use serde_json::json;
use shared::domain::api_keys::Caller;
use shared::usecases::rate_limit::{self, RateDecision};
use shared::AppState;

use super::{client_ip, json_response, ApiError, Request, Response};

/// Counts the request against its client address.
pub async fn hit_address(state: &AppState, req: &Request) -> Result<RateDecision, ApiError> {
    let bucket = format!("ip:{}", client_ip(req));
    Ok(rate_limit::hit(state.into(), &bucket, state.config.rate_limit_per_ip).await?)
}

/// Counts the request against the caller's key.
pub async fn hit_key(state: &AppState, caller: &Caller) -> Result<RateDecision, ApiError> {
    let bucket = format!("key:{}", caller.key_id);
    Ok(rate_limit::hit(state.into(), &bucket, state.config.rate_limit_per_key).await?)
}

/// `X-RateLimit-*` (and `Retry-After` once refused) for decision `d`.
pub fn rate_headers(resp: &mut Response, d: &RateDecision) {
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

/// The 429 answer for a refused decision, in the v1 envelope.
pub fn too_many(d: &RateDecision) -> Response {
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "success": false,
            "error": format!("rate limit of {} requests per minute exceeded; retry in {} s", d.limit, d.retry_after),
            "code": "rate_limited",
        }),
    )
}
