//! `GET /api/command-log` (admin): every cloud command gpufleet ran, newest first:
//! `?limit=` (1-500, default 100), `?cursor=` (the `next_cursor` of the previous page),
//! `?include_cleared=true` (also what a clear hid).

use serde::Serialize;
use shared::domain::command_log::CommandEntry;
use shared::usecases::command_log::{self, DEFAULT_LIMIT, MAX_LIMIT};
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{data, query_param, respond_status, rfc3339, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// One cloud command gpufleet ran.
#[derive(Serialize, ToSchema)]
pub struct CommandLogEntryView {
    /// Sorts by time; unique.
    pub id: String,
    /// RFC 3339.
    pub timestamp: String,
    /// The command as its CLI equivalent.
    pub command: String,
    /// `success` or `error`.
    pub status: String,
    /// What went wrong, or a short result.
    pub detail: Option<String>,
    /// Seconds with one decimal, e.g. `1.2s`.
    pub execution_time: String,
    /// Who caused it: `admin:<name>`, `user:<id>` or `system`.
    pub user: String,
}

impl CommandLogEntryView {
    fn new(e: &CommandEntry) -> Self {
        CommandLogEntryView {
            id: e.id.clone(),
            timestamp: rfc3339(e.at),
            command: e.command.clone(),
            status: e.status.clone(),
            detail: e.detail.clone(),
            execution_time: format!("{:.1}s", e.execution_ms as f64 / 1000.0),
            user: e.user.clone(),
        }
    }
}

/// One page of the command log, newest first.
#[derive(Serialize, ToSchema)]
pub struct CommandLogPage {
    pub entries: Vec<CommandLogEntryView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
    /// When the log was last cleared (RFC 3339), if ever.
    pub cleared_at: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("The cloud commands gpufleet ran, newest first")
        .query(
            "limit",
            "Entries per page.",
            serde_json::json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                               "default": DEFAULT_LIMIT}),
        )
        .query(
            "cursor",
            "The `next_cursor` of the previous page.",
            serde_json::json!({"type": "string", "minLength": 37, "maxLength": 37,
                               "pattern": "^[0-9]{20}-[0-9a-fA-F]{16}$"}),
        )
        .query(
            "include_cleared",
            "Also the entries a clear hid.",
            serde_json::json!({"type": "boolean", "default": false}),
        )
        .answers::<CommandLogPage>(200, "One page of the log.")
        .errors(&[400])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let query = command_log::PageQuery::parse(
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
            query_param(&req, "include_cleared").as_deref(),
        )?;
        let page = command_log::list(&*state.store, &query).await?;
        Ok((
            data(&CommandLogPage {
                entries: page.entries.iter().map(CommandLogEntryView::new).collect(),
                next_cursor: page.next_cursor,
                cleared_at: page.cleared_at.map(rfc3339),
            }),
            "Command log retrieved successfully",
        ))
    })
    .await
}
