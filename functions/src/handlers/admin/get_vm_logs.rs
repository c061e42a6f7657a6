//! `GET /api/vm-logs/{hostname}[?after=<cursor>]` (admin): `{hostname, logs, cursor}`.
//! 404 unknown VM; 503 while the VM has produced no logs yet (still installing its log
//! shipping). `after` returns only what came since an earlier `cursor` (the log viewer
//! follows the log this way).

use serde::Serialize;
use shared::usecases::admin;
use shared::{AppState, Error};
use utoipa::ToSchema;

use crate::http::{
    no_store, ok_typed, path_param, query_param, respond, ApiError, Principal, Request, Response,
};
use crate::openapi::ApiDoc;

/// A page of a VM's log.
#[derive(Serialize, ToSchema)]
pub struct VmLogPage {
    hostname: String,
    /// The lines, each ending in a newline (empty if nothing new).
    logs: String,
    /// Pass back as `after` to get only what comes later.
    cursor: u64,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A VM's log, or what came since a cursor")
        .query(
            "after",
            "A `cursor` from an earlier answer: only what came later (default 0: all kept).",
            serde_json::json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        )
        .answers::<VmLogPage>(200, "The log lines.")
        .errors(&[400, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let hostname = path_param(&req, "hostname")?;
        let after = match query_param(&req, "after") {
            None => 0,
            Some(raw) => raw.parse::<u64>().map_err(|_| {
                ApiError::bad_request("after must be a cursor from an earlier answer")
            })?,
        };
        let page = admin::vm_logs((&state).into(), &hostname, after)
            .await?
            .ok_or_else(|| {
                Error::Unavailable(format!(
                "{hostname} has not sent any logs yet; it may still be installing its log shipping"
            ))
            })?;
        let mut logs = page.lines.join("\n");
        if !page.lines.is_empty() {
            logs.push('\n');
        }
        let mut resp = ok_typed(&VmLogPage {
            hostname,
            logs,
            cursor: page.cursor,
        })?;
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn unavailable_until_the_first_line() {
        let t = TestState::new();
        t.vm("vm-1").await;
        let resp = serve(t.state.clone(), event("get-vm-logs/vm-1.json")).await;
        assert_eq!(resp.status(), 503);
        shared::usecases::vm_agent::append_logs((&t.state).into(), "vm-1", &["hello"])
            .await
            .unwrap();
        let resp = serve(t.state.clone(), event("get-vm-logs/vm-1.json")).await;
        assert_eq!(resp.status(), 200);
        let body = body_json(&resp);
        assert_eq!(body["logs"], "hello\n");
        assert_eq!(body["hostname"], "vm-1");
    }
}
