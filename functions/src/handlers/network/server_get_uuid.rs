//! `POST /api/openstack/server/get-uuid` `{server_name}` (API key or admin): the instance id of
//! the deployment's instance with that Name tag; 404 if none.

use serde_json::json;
use shared::AppState;

use crate::http::{body_field, json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let name = body_field(&body, "server_name")?;
        let id = state
            .network
            .instance_by_name(&name)
            .await?
            .ok_or_else(|| shared::Error::NotFound(format!("server {name}")))?;
        Ok((
            json!({"server_name": name, "server_uuid": id}),
            "Server found",
        ))
    })
    .await
}
