//! `GET /api/v1/requests/{request_id}` (API key: own requests only; admin: any).

use shared::usecases::requests;
use shared::AppState;

use crate::http::{ok_typed, path_param, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::views::RequestView;

pub fn api() -> ApiDoc {
    ApiDoc::new("One GPU request")
        .answers::<RequestView>(200, "The request.")
        // 400: `request_id` is not a UUID.
        .errors(&[400])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let caller = principal.caller()?.cloned();
        let id = path_param(&req, "request_id")?;
        let request = requests::get((&state).into(), caller.as_ref(), &id).await?;
        let cost = shared::usecases::costs::request_cost(
            &*state.store,
            &request,
            state.clock.now_millis(),
        )
        .await?;
        ok_typed(&RequestView::new(&request).with_cost(cost))
    })
    .await
}
