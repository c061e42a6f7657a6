//! `POST /api/clear-log` (admin): hides the command log's entries so far from the default
//! view. Nothing is deleted (`GET /api/command-log?include_cleared=true` shows all), and the
//! clear itself is logged under the admin.

use serde_json::json;
use shared::usecases::command_log;
use shared::AppState;

use crate::http::{respond_status, rfc3339, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond_status(async {
        let at = command_log::clear(&*state.store, &*state.clock).await?;
        Ok((
            json!({"cleared_at": rfc3339(at)}),
            "Command log cleared successfully",
        ))
    })
    .await
}
