//! `POST /api/get-target-aggregate` (API key or admin) `{hostname, gpu_type}`: the pool a
//! host should be in, with the reasoning.

use serde::Deserialize;
use shared::usecases::pools;
use shared::AppState;
use utoipa::ToSchema;

use super::views::TargetAggregateView;
use crate::http::text_field;
use crate::http::{data, json_body, respond_status, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// The host to place.
#[derive(Deserialize, ToSchema)]
pub struct TargetAggregateRequest {
    /// The host's hostname (trimmed; at most 256 bytes).
    #[schema(value_type = RequiredText, required = true)]
    hostname: Option<String>,
    /// Its GPU type, e.g. `A10G` (400 if the host has another).
    #[schema(value_type = RequiredText, required = true)]
    gpu_type: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("The pool a host should be in, and why")
        .json_body::<TargetAggregateRequest>()
        .answers::<TargetAggregateView>(200, "The recommendation.")
        // 400: the host has another GPU type; 404: unknown host or pool.
        .errors(&[400, 404])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: TargetAggregateRequest = json_body(&req)?;
        let hostname = text_field(body.hostname.as_deref(), "hostname")?;
        let gpu_type = text_field(body.gpu_type.as_deref(), "gpu_type")?;
        let recommendation = pools::target((&state).into(), &hostname, &gpu_type).await?;
        Ok((
            data(&TargetAggregateView::new(&recommendation)),
            "Target aggregate determined",
        ))
    })
    .await
}
