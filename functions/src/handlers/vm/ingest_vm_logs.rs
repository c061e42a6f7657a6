//! `POST /api/vm-logs` `{log_group, log_stream, messages: [...]}`: a batch of a VM's log
//! lines, in the fields of a CloudWatch Logs subscription batch but decoded and flat (the
//! subscription's own gzipped `awslogs` delivery goes to the logs subscriber function, not
//! here); `log_stream` is the plain hostname. Callable by an admin-side forwarder (Basic)
//! or by the VM itself (its bearer token, for its own hostname only). 400 missing fields,
//! 404 unknown VM.

use serde::Deserialize;
use shared::usecases::vm_agent;
use shared::AppState;
use utoipa::ToSchema;

use super::views::VmReportAccepted;
use crate::http::{
    json_body, ok_typed, required, respond, ApiError, Principal, Request, RequiredText, Response,
};
use crate::openapi::ApiDoc;

/// Log lines of one VM. Only this flat JSON shape is taken, not the subscription's own
/// `{"awslogs": {"data": "<base64 of gzipped JSON>"}}`.
#[derive(Deserialize, ToSchema)]
pub struct VmLogBatch {
    /// Where the lines came from (e.g. the CloudWatch log group); must not be blank, not
    /// stored.
    #[schema(
        value_type = String,
        pattern = "[^\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    log_group: Option<String>,
    /// The VM's hostname (not a `<hostname>.<proof>` CloudWatch stream name). With a VM
    /// token it must be that VM's.
    #[schema(value_type = RequiredText)]
    log_stream: Option<String>,
    /// Log messages: ANSI codes and control characters are removed, each is split into
    /// lines (over-long lines cut), and the VM's log is capped (GPUFLEET_LOG_CAP_BYTES).
    #[schema(value_type = Vec<String>)]
    messages: Option<Vec<String>>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Append log lines to a VM's log (admin forwarder or the VM)")
        .json_body::<VmLogBatch>()
        .answers::<VmReportAccepted>(200, "Stored.")
        .errors(&[404])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: VmLogBatch = json_body(&req)?;
        required(&body.log_group, "log_group")?;
        let hostname = required(&body.log_stream, "log_stream")?;
        let messages = body
            .messages
            .ok_or_else(|| ApiError::bad_request("messages (a list of strings) is required"))?;
        // The router authenticated a VM for this same `log_stream`, or an admin.
        let hostname = match &principal {
            Principal::Vm(vm) => vm.hostname(),
            Principal::Admin => hostname,
            Principal::Anonymous | Principal::User(_) => {
                return Err(ApiError::Core(shared::Error::Unauthorized))
            }
        };
        vm_agent::append_logs((&state).into(), hostname, &messages).await?;
        ok_typed(&VmReportAccepted::new("VM logs posted successfully."))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn cloudwatch_shaped_logs_are_stored_clean() {
        let t = TestState::new();
        t.vm("vm-1").await;
        let resp = serve(
            t.state.clone(),
            event("ingest-vm-logs/cloudwatch-shape.json"),
        )
        .await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let page = t.state.store.read_logs("vm-1", 0).await.unwrap().unwrap();
        assert_eq!(
            page.lines,
            vec!["Cloud-init v. 24.1 running", "agent: started"]
        );
    }
}
