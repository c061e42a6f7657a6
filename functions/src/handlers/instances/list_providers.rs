//! `GET /api/v1/providers` (API key): the providers this deployment has credentials for.

use serde::Serialize;
use shared::usecases::instances;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{data, respond_v1, Principal, Request, Response, V1Ok};
use crate::openapi::ApiDoc;

/// A provider's name (`aws_ec2`, `vast_ai`, `local`): what offers and instances name as
/// their `provider`.
#[derive(Serialize, ToSchema)]
pub struct ProviderName(String);

pub fn api() -> ApiDoc {
    ApiDoc::new("The providers this deployment has credentials for")
        .answers_list::<ProviderName>(200, "The providers' names.")
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    let state = &state;
    respond_v1(async {
        let names: Vec<ProviderName> = instances::providers(state.into())
            .into_iter()
            .map(|name| ProviderName(name.to_string()))
            .collect();
        V1Ok::ok("Providers retrieved successfully", data(&names))
    })
    .await
}
