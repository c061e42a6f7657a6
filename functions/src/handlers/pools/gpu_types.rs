//! `GET /api/gpu-types` (API key or admin): each GPU type with its pools by kind.

use shared::usecases::pools;
use shared::AppState;

use super::views::GpuTypeView;
use crate::http::{data, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("Each GPU type with its pools by kind")
        .answers_list::<GpuTypeView>(200, "The GPU types of the fleet and the configuration.")
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond_status(async {
        let types = pools::gpu_types((&state).into()).await?;
        Ok((
            data(&super::views::gpu_types(&types)),
            "GPU types retrieved successfully",
        ))
    })
    .await
}
