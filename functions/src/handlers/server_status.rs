//! `POST /api/openstack/server/status` `{server_uuid}` (API key or admin): the instance's state.

use serde_json::json;
use shared::AppState;

use crate::http::{
    body_field, json_body, require_api_key_or_admin, respond_status, Request, Response,
};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_api_key_or_admin(&state, &req).await?;
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
