//! `POST /api/openstack/port/create` `{network_id, port_name}` (admin): a network interface in
//! subnet `network_id`, tagged with the deployment.

use shared::AppState;

use crate::http::{body_field, json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let subnet = body_field(&body, "network_id")?;
        let name = body_field(&body, "port_name")?;
        let port = state.network.create_port(&subnet, &name).await?;
        Ok((super::views::port(&port), "Port created successfully"))
    })
    .await
}
