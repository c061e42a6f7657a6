//! `POST /api/v1/api-keys` (admin): JSON `{user_id, label?, gpu_quota?, budget_usd?}` → 201 with the key,
//! shown this once (only its hash is kept).

use http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::domain::requests::MAX_USER_ID_CHARS;
use shared::domain::ApiKey;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{
    json_body, respond, typed_json_response, ApiError, Principal, Request, Response,
};
use crate::openapi::ApiDoc;

/// A new API key for a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// Whose key it is; their requests and quota are counted under it.
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    user_id: String,
    /// A note for admins (at most 100 printable characters).
    #[serde(default)]
    #[schema(max_length = 100, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    label: String,
    /// GPUs the user may hold at once (default: GPUFLEET_DEFAULT_GPU_QUOTA).
    #[schema(minimum = 0, maximum = 4294967295u32)]
    gpu_quota: Option<u32>,
    /// The user's monthly budget in USD (calendar month, UTC): a request or instance that
    /// could take their month past it is refused. Omit for none.
    #[schema(minimum = 0, maximum = 1000000000)]
    budget_usd: Option<f64>,
}

/// The key, shown this once (only its hash is kept).
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// `gpf_…`: send as `Authorization: Bearer <key>`.
    key: String,
    key_id: String,
    user_id: String,
    label: String,
    gpu_quota: u32,
    budget_usd: Option<f64>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Create an API key for a user (shown once)")
        .json_body::<NewApiKey>()
        .answers::<CreatedApiKey>(201, "The new key.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let body: NewApiKey = json_body(&req)?;
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
        if body
            .budget_usd
            .is_some_and(|b| !b.is_finite() || !(0.0..=1e9).contains(&b))
        {
            return Err(ApiError::bad_request(
                "budget_usd must be a number of US dollars from 0 to 1000000000",
            ));
        }
        let quota = body.gpu_quota.unwrap_or(state.config.default_gpu_quota);
        let (mut key, plain) =
            ApiKey::generate(&body.user_id, &body.label, quota, state.clock.now_millis());
        // `+ 0.0` turns -0 into 0 (which would print as "$-0.00").
        key.budget_usd = body.budget_usd.map(|b| b + 0.0);
        state.store.insert_api_key(&key).await?;
        tracing::info!(key_id = %key.key_id, user = %key.user_id, "API key created");
        let mut resp = typed_json_response(
            StatusCode::CREATED,
            &CreatedApiKey {
                key: plain,
                key_id: key.key_id,
                user_id: key.user_id,
                label: key.label,
                gpu_quota: key.gpu_quota,
                budget_usd: key.budget_usd,
            },
        );
        crate::http::no_store(&mut resp);
        Ok(resp)
    })
    .await
}
