//! `GET /api/gpu-types` (API key or admin): each GPU type with its pools by kind.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond_status(async {
        let types = pools::gpu_types((&state).into()).await?;
        Ok((
            super::views::gpu_types(&types),
            "GPU types retrieved successfully",
        ))
    })
    .await
}
