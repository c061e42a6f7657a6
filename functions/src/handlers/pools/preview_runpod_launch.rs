//! `POST /api/preview-runpod-launch` (admin) `{hostname, image_name, image_id}`:
//! the launch that execute would run (secrets masked) and the resources it takes.

use serde_json::json;
use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let plan = pools::runpod_plan(&state, &body).await?;
        Ok((
            json!({
                "command": plan.command,
                "masked_command": plan.command,
                "estimated_resources": {
                    "flavor": plan.host.instance_type,
                    "gpu_count": plan.host.gpu_capacity,
                    "gpu_type": plan.host.gpu_type,
                    "aggregate": plan.pool,
                },
            }),
            "Launch preview generated",
        ))
    })
    .await
}
