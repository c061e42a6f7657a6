//! `POST /api/openstack/network/show` `{network_name}` (API key or admin): the VPC (by id or Name
//! tag) and its subnets.

use shared::AppState;

use crate::http::{
    body_field, json_body, require_api_key_or_admin, respond_status, Request, Response,
};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_api_key_or_admin(&state, &req).await?;
        let body: serde_json::Value = json_body(&req)?;
        let name = body_field(&body, "network_name")?;
        Ok((
            state.network.show_network(&name).await?,
            "Network retrieved successfully",
        ))
    })
    .await
}
