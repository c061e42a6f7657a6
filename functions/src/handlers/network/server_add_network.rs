//! `POST /api/openstack/server/add-network` `{server_uuid, port_id}` (admin): attaches the
//! deployment's interface to the deployment's instance.

use serde::Deserialize;
use shared::AppState;
use utoipa::ToSchema;

use super::views::PortAttachmentView;
use crate::http::text_field;
use crate::http::{data, json_body, respond_status, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// The interface and the instance to attach it to.
#[derive(Deserialize, ToSchema)]
pub struct ServerAddNetworkRequest {
    /// The deployment's instance (`i-…`).
    #[schema(value_type = RequiredText, required = true)]
    server_uuid: Option<String>,
    /// The deployment's network interface (`eni-…`).
    #[schema(value_type = RequiredText, required = true)]
    port_id: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Attach the deployment's network interface to the deployment's instance")
        .json_body::<ServerAddNetworkRequest>()
        .answers::<PortAttachmentView>(200, "The attachment.")
        // 404: not an instance or interface of this deployment; 503: no cloud network here.
        .errors(&[400, 404, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: ServerAddNetworkRequest = json_body(&req)?;
        let instance = text_field(body.server_uuid.as_deref(), "server_uuid")?;
        let port = text_field(body.port_id.as_deref(), "port_id")?;
        let attached = state.network.attach_port(&instance, &port).await?;
        Ok((
            data(&PortAttachmentView::new(&attached)),
            "Network added to server",
        ))
    })
    .await
}
