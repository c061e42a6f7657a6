//! `POST /api/v1/instances/{id}/start` (API key: own only; admin: any).

use shared::usecases::instances;
use shared::AppState;

use crate::http::{path_param, v1, Request, Response, V1Auth, V1Ok};
use crate::views::instance_json;

pub async fn handle(state: AppState, req: Request) -> Response {
    let (state, req) = (&state, &req);
    v1(state, req, V1Auth::ApiKeyOrAdmin, |caller| async move {
        let id = path_param(req, "id")?;
        let instance = instances::power(state, caller.as_ref(), &id, true).await?;
        V1Ok::ok("Instance started successfully", instance_json(&instance))
    })
    .await
}
