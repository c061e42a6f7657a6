//! `DELETE /api/v1/instances/{id}` (API key: own only; admin: any). 200 `destroyed` once the
//! provider confirms; 202 `destroying` while it has not yet (reconcile finishes it).

use http::StatusCode;
use shared::domain::instances::InstanceStatus;
use shared::usecases::instances;
use shared::AppState;

use crate::http::{data, path_param, respond_v1, Principal, Request, Response, V1Ok};
use crate::openapi::ApiDoc;
use crate::views::InstanceView;

pub fn api() -> ApiDoc {
    ApiDoc::new("Destroy an instance")
        .answers::<InstanceView>(200, "Destroyed: the provider confirmed it.")
        .answers::<InstanceView>(
            202,
            "Destroying: the provider has not confirmed yet; reconcile finishes it.",
        )
        // 400: its provider is no longer configured; 409: it is still being created.
        .errors(&[400, 409])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async move {
        let caller = principal.caller()?.cloned();
        let id = path_param(req, "id")?;
        let instance = instances::destroy(state.into(), caller.as_ref(), &id).await?;
        let confirmed = instance.status != InstanceStatus::Destroying;
        Ok(V1Ok {
            status: if confirmed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            },
            message: if confirmed {
                "Instance destroyed successfully"
            } else {
                "Instance is being destroyed; the provider has not confirmed yet"
            },
            data: Some(data(&InstanceView::new(
                &instance,
                state.clock.now_millis(),
            ))),
            replayed: false,
        })
    })
    .await
}
