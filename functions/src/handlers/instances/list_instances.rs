//! `GET /api/v1/instances` (API key: the caller's own; admin: everyone's).

use shared::usecases::instances;
use shared::AppState;

use crate::http::{respond_v1, Principal, Request, Response, V1Ok};
use crate::views::instance_json;

pub async fn handle(state: AppState, principal: Principal, _req: Request) -> Response {
    let state = &state;
    respond_v1(async move {
        let caller = principal.caller()?.cloned();
        let list = instances::list(state.into(), caller.as_ref()).await?;
        V1Ok::ok(
            "Instances retrieved successfully",
            list.iter().map(instance_json).collect(),
        )
    })
    .await
}
