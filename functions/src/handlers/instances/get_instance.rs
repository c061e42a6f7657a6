//! `GET /api/v1/instances/{id}` (API key: own only, others' are 404; admin: any), refreshed
//! from the provider.

use shared::usecases::instances;
use shared::AppState;

use crate::http::{data, path_param, respond_v1, Principal, Request, Response, V1Ok};
use crate::openapi::ApiDoc;
use crate::views::InstanceView;

pub fn api() -> ApiDoc {
    ApiDoc::new("One instance, refreshed from its provider")
        .answers::<InstanceView>(200, "The instance.")
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async move {
        let caller = principal.caller()?.cloned();
        let id = path_param(req, "id")?;
        let instance = instances::get(state.into(), caller.as_ref(), &id).await?;
        V1Ok::ok(
            "Instance retrieved successfully",
            data(&InstanceView::new(&instance, state.clock.now_millis())),
        )
    })
    .await
}
