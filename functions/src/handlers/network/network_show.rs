//! `POST /api/openstack/network/show` `{network_name}` (API key or admin): the VPC (by id or Name
//! tag) and its subnets.

use serde::Deserialize;
use shared::AppState;
use utoipa::ToSchema;

use super::views::NetworkView;
use crate::http::text_field;
use crate::http::{data, json_body, respond_status, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// The network to show.
#[derive(Deserialize, ToSchema)]
pub struct NetworkShowRequest {
    /// A VPC id (`vpc-…`) or a VPC's Name tag.
    #[schema(value_type = RequiredText, required = true)]
    network_name: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A network (VPC, by id or Name tag) with its subnets")
        .json_body::<NetworkShowRequest>()
        .answers::<NetworkView>(200, "The network.")
        // 503: no cloud network here (local mode).
        .errors(&[400, 404, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: NetworkShowRequest = json_body(&req)?;
        let name = text_field(body.network_name.as_deref(), "network_name")?;
        let network = state.network.show_network(&name).await?;
        Ok((
            data(&NetworkView::new(&network)),
            "Network retrieved successfully",
        ))
    })
    .await
}
