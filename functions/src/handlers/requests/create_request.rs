//! `POST /api/v1/requests` (API key): ask for `gpu_count` GPUs for `duration_hours`.
//! 201 `{request_id, status}`; an `Idempotency-Key` header replays the first answer.

use http::StatusCode;
use serde::Serialize;
use shared::domain::requests::NewRequest;
use shared::domain::RequestStatus;
use shared::usecases::requests;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{
    idempotency_key, json_body, respond, typed_json_response, Principal, Request, Response,
};
use crate::openapi::ApiDoc;

// Describes the body only: `NewRequest::parse` reads the JSON itself, so each refusal
// names the field and the rule (unknown fields are ignored).
/// A request for GPUs.
#[derive(ToSchema)]
pub struct NewGpuRequest {
    /// The API key's own user (another user's id is refused).
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub user_id: String,
    /// GPUs wanted (at most 8: `MAX_GPUS_PER_REQUEST`); counted against the GPU quota.
    #[schema(minimum = 1, maximum = 8)]
    pub gpu_count: u32,
    /// How long the lease runs once the machines are up: at most the deployment's
    /// `GPUFLEET_MAX_LEASE_HOURS` (72 unless set).
    #[schema(minimum = 1)]
    pub duration_hours: u32,
}

/// The recorded request; GET /api/v1/requests/{request_id} follows it.
#[derive(Serialize, ToSchema)]
pub struct CreatedRequest {
    /// A UUID.
    pub request_id: String,
    pub status: RequestStatus,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Ask for GPUs for some hours (provisioned asynchronously)")
        .json_body::<NewGpuRequest>()
        .idempotency_key()
        .answers::<CreatedRequest>(
            201,
            "Recorded and queued (on a repeat with the same Idempotency-Key, the first request).",
        )
        // 400: invalid, or over the GPU quota; 403: another user's `user_id`; 409: the
        // Idempotency-Key was used for another body.
        .errors(&[400, 403, 409])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let caller = principal.user()?.clone();
        let body: serde_json::Value = json_body(&req)?;
        let input = NewRequest::parse(&body, state.config.max_lease_hours)?;
        let created =
            requests::create((&state).into(), &caller, input, idempotency_key(&req)?).await?;
        let mut resp = typed_json_response(
            StatusCode::CREATED,
            &CreatedRequest {
                request_id: created.request.request_id,
                status: created.request.status,
            },
        );
        if created.replayed {
            resp.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    })
    .await
}
