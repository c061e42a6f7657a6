//! `GET /api/command-log` (admin): every cloud command gpufleet ran, newest first:
//! `?limit=` (1-500, default 100), `?cursor=` (the `next_cursor` of the previous page),
//! `?include_cleared=true` (also what a clear hid).

use serde_json::json;
use shared::usecases::command_log;
use shared::AppState;

use crate::http::{query_param, respond_status, rfc3339, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let query = command_log::PageQuery::parse(
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
            query_param(&req, "include_cleared").as_deref(),
        )?;
        let page = command_log::list(&*state.store, &query).await?;
        let entries: Vec<serde_json::Value> = page
            .entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "timestamp": rfc3339(e.at),
                    "command": e.command,
                    "status": e.status,
                    "detail": e.detail,
                    "execution_time": format!("{:.1}s", e.execution_ms as f64 / 1000.0),
                    "user": e.user,
                })
            })
            .collect();
        Ok((
            json!({
                "entries": entries,
                "next_cursor": page.next_cursor,
                "cleared_at": page.cleared_at.map(rfc3339),
            }),
            "Command log retrieved successfully",
        ))
    })
    .await
}
