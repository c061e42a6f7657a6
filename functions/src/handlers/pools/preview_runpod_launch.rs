//! `POST /api/preview-runpod-launch` (admin) `{hostname, image_name, image_id}`:
//! the launch that execute would run (secrets masked) and the resources it takes.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let plan = pools::runpod_plan((&state).into(), &super::runpod_launch(&body)?).await?;
        Ok((
            super::views::runpod_preview(&plan),
            "Launch preview generated",
        ))
    })
    .await
}
