//! `POST /api/v1/instances/{id}/stop` (API key: own only; admin: any).

use shared::usecases::instances;
use shared::AppState;

use crate::http::{data, path_param, respond_v1, Principal, Request, Response, V1Ok};
use crate::openapi::ApiDoc;
use crate::views::InstanceView;

pub fn api() -> ApiDoc {
    ApiDoc::new("Stop an instance")
        .answers::<InstanceView>(200, "The instance, stopping or stopped.")
        // 400: its provider is no longer configured; 409: still being created, or ended.
        .errors(&[400, 409])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async move {
        let caller = principal.caller()?.cloned();
        let id = path_param(req, "id")?;
        let instance = instances::power(state.into(), caller.as_ref(), &id, false).await?;
        V1Ok::ok(
            "Instance stopped successfully",
            data(&InstanceView::new(&instance, state.clock.now_millis())),
        )
    })
    .await
}
