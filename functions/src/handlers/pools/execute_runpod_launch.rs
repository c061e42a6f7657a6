//! `POST /api/execute-runpod-launch` (admin) `{hostname, image_name, image_id}`: launches an
//! added machine of the host's instance type with the image into its runpod pool.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let launched = pools::runpod_launch((&state).into(), &super::runpod_launch(&body)?).await?;
        Ok((super::views::runpod_launched(&launched), "Launch started"))
    })
    .await
}
