//! `POST /api/reconcile` (admin): reconcile on demand (the `reconcile` function runs the same
//! use case on a schedule): orphan machines terminated, vanished ones marked.

use shared::usecases::reconcile;
use shared::AppState;

use crate::http::{ok_json, respond, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let report = reconcile::reconcile(&state).await?;
        ok_json(serde_json::to_value(report).map_err(|e| shared::Error::Internal(e.into()))?)
    })
    .await
}
