//! `POST /api/hyperstack/firewall/get-attachments` `{firewall_id}` (API key or admin): the
//! deployment's instances the security group is attached to.

use serde_json::json;
use shared::AppState;

use crate::http::{body_field, json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let group = body_field(&body, "firewall_id")?;
        let attached = state.network.firewall_attachments(&group).await?;
        Ok((
            json!({"firewall_id": group, "vm_ids": attached}),
            "Firewall attachments retrieved",
        ))
    })
    .await
}
