//! `POST /vm_startup` `{"hostname", "after"?, "collected"?}` + VM bearer token: the VM's
//! long-poll for its assignment (with `after`: for a CRD command newer than the one it ran),
//! and for the admin's final-sync request (`{"status":"collect","requested_at"}`, newer than
//! `collected`). Returns at once when assigned, else waits (at most the configured long-poll,
//! ≤ 25 s to fit API Gateway) and answers `{"status":"waiting"}` so the agent asks again.

use serde::Deserialize;
use serde_json::json;
use shared::usecases::vm_agent::{self, Seen, StartupAnswer};
use shared::AppState;

use crate::http::{json_body, ok_json, respond, Principal, Request, Response};

#[derive(Deserialize)]
struct Body {
    /// The `command_at` of the command the agent already ran: answer only with a newer one.
    after: Option<i64>,
    /// The final-sync request (`requested_at`) the agent already handled.
    collected: Option<i64>,
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let answer = vm_agent::wait_for_assignment(
            (&state).into(),
            principal.vm()?,
            Seen {
                command_at: body.after,
                collect_requested_at: body.collected,
            },
            state.config.long_poll,
        )
        .await?;
        match answer {
            StartupAnswer::Assigned {
                pin,
                command,
                command_at,
            } => ok_json(json!({
                "status": "success",
                "pin": pin,
                "command": command,
                "command_at": command_at,
            })),
            StartupAnswer::Leased { request_id } => {
                ok_json(json!({"status": "leased", "request_id": request_id}))
            }
            StartupAnswer::Collect { requested_at } => {
                ok_json(json!({"status": "collect", "requested_at": requested_at}))
            }
            StartupAnswer::Waiting => ok_json(json!({"status": "waiting"})),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn waiting_then_assigned() {
        let t = TestState::with_long_poll_secs(1);
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("vm-startup/poll.json")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(body_json(&resp)["status"], "waiting");

        t.claim("someone@example.org").await;
        let resp = serve(t.state.clone(), event("vm-startup/poll.json")).await;
        let body = body_json(&resp);
        assert_eq!(body["status"], "success");
        assert_eq!(body["pin"].as_str().unwrap().len(), 6);
        assert!(body["command"].as_str().unwrap().contains("--code="));
    }

    #[tokio::test]
    async fn rejects_bad_requests() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("vm-startup/missing-hostname.json")).await;
        assert_eq!(resp.status(), 400);
        // An unknown hostname and a wrong token get the same answer: no probing for names.
        let unknown = serve(t.state.clone(), event("vm-startup/unknown-vm.json")).await;
        let wrong = serve(t.state.clone(), event("vm-startup/wrong-token.json")).await;
        for resp in [&unknown, &wrong] {
            assert_eq!(resp.status(), 401);
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
        assert_eq!(body_text(&unknown), body_text(&wrong));
    }
}
