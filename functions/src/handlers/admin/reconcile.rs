//! `POST /api/reconcile` (admin): reconcile on demand (the `reconcile` function runs the same
//! use case on a schedule): orphan machines terminated, vanished ones marked.

use shared::usecases::reconcile::{self, ReconcileReport};
use shared::AppState;

use crate::http::{ok_typed, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("Reconcile the cloud's machines and the records now")
        .answers::<ReconcileReport>(200, "What was terminated, adopted and marked.")
        // The store cannot save, or a cloud is unavailable.
        .errors(&[503])
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let report = reconcile::reconcile(&state).await?;
        ok_typed(&report)
    })
    .await
}
