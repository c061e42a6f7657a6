//! `POST /api/vm-logs` `{log_group, log_stream, messages: [...]}`: the shape the CloudWatch
//! Logs subscription delivers; `log_stream` is the hostname. Callable by an admin-side
//! forwarder (Basic) or by the VM itself (its bearer token). 400 missing fields, 404
//! unknown VM.

use serde::Deserialize;
use serde_json::json;
use shared::usecases::vm_agent;
use shared::AppState;

use crate::http::{json_body, ok_json, required, respond, ApiError, Principal, Request, Response};

#[derive(Deserialize)]
struct Body {
    log_group: Option<String>,
    log_stream: Option<String>,
    messages: Option<Vec<String>>,
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
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
        ok_json(json!({"message": "VM logs posted successfully."}))
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
