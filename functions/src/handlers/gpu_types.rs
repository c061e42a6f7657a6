//! `GET /api/gpu-types` (API key or admin): each GPU type with its pools by kind.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{require_api_key_or_admin, respond_status, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_api_key_or_admin(&state, &req).await?;
        Ok((
            pools::gpu_types(&state).await?,
            "GPU types retrieved successfully",
        ))
    })
    .await
}
