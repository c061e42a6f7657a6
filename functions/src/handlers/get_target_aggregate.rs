//! `POST /api/get-target-aggregate` (API key or admin) `{hostname, gpu_type}`: the pool a
//! host should be in, with the reasoning.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, require_api_key_or_admin, respond_status, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_api_key_or_admin(&state, &req).await?;
        let body: serde_json::Value = json_body(&req)?;
        Ok((
            pools::target(&state, &body).await?,
            "Target aggregate determined",
        ))
    })
    .await
}
