//! `POST /api/openstack/server/status` `{server_uuid}` (API key or admin): the instance's state.

use serde_json::json;
use shared::AppState;

use crate::http::{body_field, json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let id = body_field(&body, "server_uuid")?;
        let status = state
            .network
            .instance_state(&id)
            .await?
            .ok_or_else(|| shared::Error::NotFound(format!("server {id}")))?;
        Ok((
            json!({"server_uuid": id, "status": status}),
            "Server status retrieved",
        ))
    })
    .await
}
