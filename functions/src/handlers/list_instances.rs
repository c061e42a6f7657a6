//! `GET /api/v1/instances` (API key: the caller's own; admin: everyone's).

use shared::usecases::instances;
use shared::AppState;

use crate::http::{v1, Request, Response, V1Auth, V1Ok};
use crate::views::instance_json;

pub async fn handle(state: AppState, req: Request) -> Response {
    let (state, req) = (&state, &req);
    v1(state, req, V1Auth::ApiKeyOrAdmin, |caller| async move {
        let list = instances::list(state, caller.as_ref()).await?;
        V1Ok::ok(
            "Instances retrieved successfully",
            list.iter().map(instance_json).collect(),
        )
    })
    .await
}
