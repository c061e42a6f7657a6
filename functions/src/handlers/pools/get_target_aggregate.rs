//! `POST /api/get-target-aggregate` (API key or admin) `{hostname, gpu_type}`: the pool a
//! host should be in, with the reasoning.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{body_field, json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let hostname = body_field(&body, "hostname")?;
        let gpu_type = body_field(&body, "gpu_type")?;
        let recommendation = pools::target((&state).into(), &hostname, &gpu_type).await?;
        Ok((
            super::views::recommendation(&recommendation),
            "Target aggregate determined",
        ))
    })
    .await
}
