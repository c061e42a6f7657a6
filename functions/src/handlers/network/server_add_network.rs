//! `POST /api/openstack/server/add-network` `{server_uuid, port_id}` (admin): attaches the
//! deployment's interface to the deployment's instance.

use shared::AppState;

use crate::http::{body_field, json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let instance = body_field(&body, "server_uuid")?;
        let port = body_field(&body, "port_id")?;
        let attached = state.network.attach_port(&instance, &port).await?;
        Ok((
            super::views::attachment(&attached),
            "Network added to server",
        ))
    })
    .await
}
