//! `GET /api/v1/instances` (API key: the caller's own; admin: everyone's).

use shared::usecases::instances;
use shared::AppState;

use crate::http::{data, respond_v1, Principal, Request, Response, V1Ok};
use crate::openapi::ApiDoc;
use crate::views::InstanceView;

pub fn api() -> ApiDoc {
    ApiDoc::new("The caller's instances (an admin's: everyone's), newest first")
        .answers_list::<InstanceView>(200, "The instances.")
}

pub async fn handle(state: AppState, principal: Principal, _req: Request) -> Response {
    let state = &state;
    respond_v1(async move {
        let caller = principal.caller()?.cloned();
        let list = instances::list(state.into(), caller.as_ref()).await?;
        V1Ok::ok(
            "Instances retrieved successfully",
            data(
                &list
                    .iter()
                    .map(|i| InstanceView::new(i, state.clock.now_millis()))
                    .collect::<Vec<_>>(),
            ),
        )
    })
    .await
}
