//! `POST /api/v1/instances/{id}/stop` (API key: own only; admin: any).

use shared::usecases::instances;
use shared::AppState;

use crate::http::{path_param, respond_v1, Principal, Request, Response, V1Ok};
use crate::views::instance_json;

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async move {
        let caller = principal.caller()?.cloned();
        let id = path_param(req, "id")?;
        let instance = instances::power(state.into(), caller.as_ref(), &id, false).await?;
        V1Ok::ok("Instance stopped successfully", instance_json(&instance))
    })
    .await
}
