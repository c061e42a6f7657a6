//! `POST /api/openstack/server/add-network` `{server_uuid, port_id}` (admin): attaches the
//! deployment's interface to the deployment's instance.

use shared::AppState;

use crate::http::{body_field, json_body, require_admin, respond_status, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_admin(&state, &req)?;
        let body: serde_json::Value = json_body(&req)?;
        let instance = body_field(&body, "server_uuid")?;
        let port = body_field(&body, "port_id")?;
        Ok((
            state.network.attach_port(&instance, &port).await?,
            "Network added to server",
        ))
    })
    .await
}
