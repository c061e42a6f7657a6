//! `POST /api/execute-runpod-launch` (admin) `{hostname, image_name, image_id}`: launches an
//! added machine of the host's instance type with the image into its runpod pool.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, require_admin, respond_status, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_admin(&state, &req)?;
        let body: serde_json::Value = json_body(&req)?;
        Ok((pools::runpod_launch(&state, &body).await?, "Launch started"))
    })
    .await
}
