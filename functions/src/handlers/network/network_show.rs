//! `POST /api/openstack/network/show` `{network_name}` (API key or admin): the VPC (by id or Name
//! tag) and its subnets.

use shared::AppState;

use crate::http::{body_field, json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let name = body_field(&body, "network_name")?;
        let network = state.network.show_network(&name).await?;
        Ok((
            super::views::network(&network),
            "Network retrieved successfully",
        ))
    })
    .await
}
