//! `POST /api/openstack/server/get-uuid` `{server_name}` (API key or admin): the instance id of
//! the deployment's instance with that Name tag; 404 if none.

use serde::{Deserialize, Serialize};
use shared::AppState;
use utoipa::ToSchema;

use crate::http::text_field;
use crate::http::{data, json_body, respond_status, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// The instance to find.
#[derive(Deserialize, ToSchema)]
pub struct ServerNameRequest {
    /// The instance's Name tag.
    #[schema(value_type = RequiredText, required = true)]
    server_name: Option<String>,
}

/// The deployment's instance with that name.
#[derive(Serialize, ToSchema)]
pub struct ServerUuidView {
    pub server_name: String,
    /// Its instance id (`i-…`).
    pub server_uuid: String,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("The instance id of the deployment's instance with a Name tag")
        .json_body::<ServerNameRequest>()
        .answers::<ServerUuidView>(200, "The instance.")
        // 404: no such instance of this deployment; 503: no cloud network here.
        .errors(&[400, 404, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: ServerNameRequest = json_body(&req)?;
        let name = text_field(body.server_name.as_deref(), "server_name")?;
        let id = state
            .network
            .instance_by_name(&name)
            .await?
            .ok_or_else(|| shared::Error::NotFound(format!("server {name}")))?;
        Ok((
            data(&ServerUuidView {
                server_name: name,
                server_uuid: id,
            }),
            "Server found",
        ))
    })
    .await
}
