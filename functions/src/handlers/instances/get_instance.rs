//! `GET /api/v1/instances/{id}` (API key: own only, others' are 404; admin: any), refreshed
//! from the provider.

use shared::usecases::instances;
use shared::AppState;

use crate::http::{path_param, respond_v1, Principal, Request, Response, V1Ok};
use crate::views::instance_json;

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async move {
        let caller = principal.caller()?.cloned();
        let id = path_param(req, "id")?;
        let instance = instances::get(state.into(), caller.as_ref(), &id).await?;
        V1Ok::ok("Instance retrieved successfully", instance_json(&instance))
    })
    .await
}
