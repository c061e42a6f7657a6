//! `POST /api/v1/requests/{request_id}/release` (API key: own requests; admin: any): ends
//! the lease now. Answers once the machines are confirmed ended (503 while they are not).

use shared::usecases::requests;
use shared::AppState;

use crate::http::{ok_typed, path_param, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::views::RequestView;

pub fn api() -> ApiDoc {
    ApiDoc::new("End a GPU request's lease now")
        .answers::<RequestView>(200, "Released: its machines are confirmed ended.")
        // 400: `request_id` is not a UUID; 409: it already ended; 503: its machines are not
        // confirmed ended yet (retry).
        .errors(&[400, 409, 503])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let caller = principal.caller()?.cloned();
        let id = path_param(&req, "request_id")?;
        let request = requests::release((&state).into(), caller.as_ref(), &id).await?;
        let view = RequestView::new(&request);
        // The release is done: a failed read of its cost leaves the figures null, not a 500.
        let now = state.clock.now_millis();
        match shared::usecases::costs::request_cost(&*state.store, &request, now).await {
            Ok(cost) => ok_typed(&view.with_cost(cost)),
            Err(e) => {
                tracing::warn!(error = ?e, request = %request.request_id, "reading a released request's cost");
                ok_typed(&view)
            }
        }
    })
    .await
}
