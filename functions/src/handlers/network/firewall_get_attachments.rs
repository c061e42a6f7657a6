//! `POST /api/hyperstack/firewall/get-attachments` `{firewall_id}` (API key or admin): the
//! deployment's instances the security group is attached to.

use serde::Deserialize;
use shared::AppState;
use utoipa::ToSchema;

use super::views::FirewallAttachmentsView;
use crate::http::text_field;
use crate::http::{data, json_body, respond_status, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// The security group to look at.
#[derive(Deserialize, ToSchema)]
pub struct FirewallGetRequest {
    /// The security group (`sg-…`).
    #[schema(value_type = RequiredText, required = true)]
    firewall_id: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("The deployment's instances a security group is attached to")
        .json_body::<FirewallGetRequest>()
        .answers::<FirewallAttachmentsView>(200, "The attachments.")
        // 503: no cloud network here (local mode).
        .errors(&[400, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: FirewallGetRequest = json_body(&req)?;
        let group = text_field(body.firewall_id.as_deref(), "firewall_id")?;
        let attached = state.network.firewall_attachments(&group).await?;
        Ok((
            data(&FirewallAttachmentsView {
                firewall_id: group,
                vm_ids: attached,
            }),
            "Firewall attachments retrieved",
        ))
    })
    .await
}
