//! `POST /api/hyperstack/firewall/update-attachments` `{firewall_id, vm_ids}` (admin): makes the
//! security group attached to exactly these of the deployment's instances.

use serde_json::json;
use shared::AppState;

use crate::http::{body_field, json_body, respond_status, ApiError, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let group = body_field(&body, "firewall_id")?;
        let ids: Vec<String> = match body.get("vm_ids") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::bad_request("vm_ids must be a list of instance ids"))?,
            _ => {
                return Err(ApiError::bad_request(
                    "vm_ids is required: a list of instance ids",
                ))
            }
        };
        let attached = state.network.set_firewall_attachments(&group, &ids).await?;
        Ok((
            json!({"firewall_id": group, "vm_ids": attached}),
            "Firewall attachments updated",
        ))
    })
    .await
}
