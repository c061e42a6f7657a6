//! `POST /api/reconcile` (admin): reconcile on demand (the `reconcile` function runs the same
//! use case on a schedule): orphan machines terminated, vanished ones marked.

use shared::usecases::reconcile;
use shared::AppState;

use crate::http::{ok_json, require_admin, respond, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond(async {
        require_admin(&state, &req)?;
        let report = reconcile::reconcile(&state).await?;
        ok_json(serde_json::to_value(report).map_err(|e| shared::Error::Internal(e.into()))?)
    })
    .await
}
