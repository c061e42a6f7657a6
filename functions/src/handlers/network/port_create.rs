//! `POST /api/openstack/port/create` `{network_id, port_name}` (admin): a network interface in
//! subnet `network_id`, tagged with the deployment.

use serde::Deserialize;
use shared::AppState;
use utoipa::ToSchema;

use super::views::PortView;
use crate::http::text_field;
use crate::http::{data, json_body, respond_status, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// The interface to create.
#[derive(Deserialize, ToSchema)]
pub struct PortCreateRequest {
    /// The subnet (`subnet-…`).
    #[schema(value_type = RequiredText, required = true)]
    network_id: Option<String>,
    /// Its Name tag.
    #[schema(value_type = RequiredText, required = true)]
    port_name: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Create a network interface in a subnet, tagged with the deployment")
        .json_body::<PortCreateRequest>()
        .answers::<PortView>(200, "The interface.")
        // 503: no cloud network here (local mode).
        .errors(&[400, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: PortCreateRequest = json_body(&req)?;
        let subnet = text_field(body.network_id.as_deref(), "network_id")?;
        let name = text_field(body.port_name.as_deref(), "port_name")?;
        let port = state.network.create_port(&subnet, &name).await?;
        Ok((data(&PortView::new(&port)), "Port created successfully"))
    })
    .await
}
