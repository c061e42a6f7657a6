//! `POST /api/clear-log` (admin): hides the command log's entries so far from the default
//! view. Nothing is deleted (`GET /api/command-log?include_cleared=true` shows all), and the
//! clear itself is logged under the admin.

use serde::Serialize;
use shared::usecases::command_log;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{data, respond_status, rfc3339, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// When the log was cleared.
#[derive(Serialize, ToSchema)]
pub struct CommandLogCleared {
    /// RFC 3339; entries up to this time are hidden from the default view.
    pub cleared_at: String,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Hide the command log's entries so far from the default view (kept)")
        .answers::<CommandLogCleared>(200, "Cleared.")
        // 503: the store cannot save changes (local mode: disk full, read-only).
        .errors(&[503])
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond_status(async {
        let at = command_log::clear(&*state.store, &*state.clock).await?;
        Ok((
            data(&CommandLogCleared {
                cleared_at: rfc3339(at),
            }),
            "Command log cleared successfully",
        ))
    })
    .await
}
