//! `POST /api/hyperstack/firewall/update-attachments` `{firewall_id, vm_ids}` (admin): makes the
//! security group attached to exactly these of the deployment's instances.

use serde::Deserialize;
use shared::AppState;
use utoipa::ToSchema;

use super::views::FirewallAttachmentsView;
use crate::http::text_field;
use crate::http::{
    data, json_body, respond_status, ApiError, Principal, Request, RequiredText, Response,
};
use crate::openapi::ApiDoc;

/// The attachments wanted.
#[derive(Deserialize, ToSchema)]
pub struct FirewallUpdateRequest {
    /// The security group (`sg-…`).
    #[schema(value_type = RequiredText, required = true)]
    firewall_id: Option<String>,
    /// Exactly the deployment's instances (`i-…`) the group should be attached to
    /// (`[]`: none).
    #[schema(value_type = Vec<String>, required = true)]
    vm_ids: Option<Vec<String>>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Attach a security group to exactly these of the deployment's instances")
        .json_body::<FirewallUpdateRequest>()
        .answers::<FirewallAttachmentsView>(200, "The attachments afterwards.")
        // 404: not an instance of this deployment; 409: the group is an instance's only
        // one; 503: no cloud network here (local mode).
        .errors(&[400, 404, 409, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: FirewallUpdateRequest = json_body(&req)?;
        let group = text_field(body.firewall_id.as_deref(), "firewall_id")?;
        let ids = body
            .vm_ids
            .ok_or_else(|| ApiError::bad_request("vm_ids is required: a list of instance ids"))?;
        let attached = state.network.set_firewall_attachments(&group, &ids).await?;
        Ok((
            data(&FirewallAttachmentsView {
                firewall_id: group,
                vm_ids: attached,
            }),
            "Firewall attachments updated",
        ))
    })
    .await
}
