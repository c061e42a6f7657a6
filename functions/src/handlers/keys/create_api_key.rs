//! `POST /api/v1/api-keys` (admin): JSON `{user_id, label?, gpu_quota?}` → 201 with the key,
//! shown this once (only its hash is kept).

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use shared::domain::requests::MAX_USER_ID_CHARS;
use shared::domain::ApiKey;
use shared::AppState;

use crate::http::{json_body, json_response, respond, ApiError, Principal, Request, Response};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    user_id: String,
    #[serde(default)]
    label: String,
    gpu_quota: Option<u32>,
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let chars = body.user_id.chars().count();
        if chars == 0 || chars > MAX_USER_ID_CHARS || body.user_id.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "user_id must be 1-{MAX_USER_ID_CHARS} characters without control characters"
            )));
        }
        if body.label.chars().count() > 100 || body.label.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "label must be at most 100 printable characters",
            ));
        }
        let quota = body.gpu_quota.unwrap_or(state.config.default_gpu_quota);
        let (key, plain) =
            ApiKey::generate(&body.user_id, &body.label, quota, state.clock.now_millis());
        state.store.insert_api_key(&key).await?;
        tracing::info!(key_id = %key.key_id, user = %key.user_id, "API key created");
        let mut resp = json_response(
            StatusCode::CREATED,
            &json!({
                "key": plain,
                "key_id": key.key_id,
                "user_id": key.user_id,
                "label": key.label,
                "gpu_quota": key.gpu_quota,
            }),
        );
        crate::http::no_store(&mut resp);
        Ok(resp)
    })
    .await
}
