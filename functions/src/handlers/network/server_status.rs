//! `POST /api/openstack/server/status` `{server_uuid}` (API key or admin): the instance's state.

use serde::{Deserialize, Serialize};
use shared::AppState;
use utoipa::ToSchema;

use crate::http::text_field;
use crate::http::{data, json_body, respond_status, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// The instance to look at.
#[derive(Deserialize, ToSchema)]
pub struct ServerUuidRequest {
    /// The deployment's instance (`i-…`).
    #[schema(value_type = RequiredText, required = true)]
    server_uuid: Option<String>,
}

/// An instance's state.
#[derive(Serialize, ToSchema)]
pub struct ServerStatusView {
    pub server_uuid: String,
    /// The EC2 state: `pending`, `running`, `stopping`, `stopped`.
    pub status: String,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("The state of the deployment's instance")
        .json_body::<ServerUuidRequest>()
        .answers::<ServerStatusView>(200, "The instance's state.")
        // 404: not a live instance of this deployment; 503: no cloud network here.
        .errors(&[400, 404, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: ServerUuidRequest = json_body(&req)?;
        let id = text_field(body.server_uuid.as_deref(), "server_uuid")?;
        let status = state
            .network
            .instance_state(&id)
            .await?
            .ok_or_else(|| shared::Error::NotFound(format!("server {id}")))?;
        Ok((
            data(&ServerStatusView {
                server_uuid: id,
                status,
            }),
            "Server status retrieved",
        ))
    })
    .await
}
