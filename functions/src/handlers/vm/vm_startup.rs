//! `POST /vm_startup` `{"hostname", "after"?, "collected"?}` + VM bearer token: the VM's
//! long-poll for its assignment (with `after`: for a CRD command newer than the one it ran),
//! and for the admin's final-sync request (`{"status":"collect","requested_at"}`, newer than
//! `collected`). Returns at once when assigned, else waits (at most the configured long-poll,
//! ≤ 25 s to fit API Gateway) and answers `{"status":"waiting"}` so the agent asks again.

use serde::{Deserialize, Serialize};
use shared::usecases::vm_agent::{self, Seen, StartupAnswer};
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{json_body, ok_typed, respond, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// A VM asking for its assignment.
#[derive(Deserialize, ToSchema)]
pub struct StartupPoll {
    /// The VM's hostname; its bearer token must be this VM's.
    #[schema(value_type = RequiredText)]
    #[allow(dead_code)] // checked by the router (`Access::Vm`)
    hostname: String,
    /// The `command_at` of the command the agent already ran: answer only with a newer one.
    after: Option<i64>,
    /// The final-sync request (`requested_at`) the agent already handled.
    collected: Option<i64>,
}

/// What the VM should do now, by `status`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum StartupReply {
    /// A participant holds the VM: run their Chrome Remote Desktop command.
    #[serde(rename = "success")]
    Assigned {
        /// The 6-digit PIN the participant types to connect.
        pin: String,
        /// The Chrome Remote Desktop command to run.
        command: String,
        /// When the command was set (ms since the epoch): send it back as `after`.
        command_at: i64,
    },
    /// The VM belongs to a GPU request: nobody will be assigned to it.
    Leased { request_id: String },
    /// Sync the participant's work now (a destroy is coming); send `requested_at` back as
    /// `collected`.
    Collect {
        /// ms since the epoch.
        requested_at: i64,
    },
    /// Nothing yet: ask again.
    Waiting,
}

impl From<StartupAnswer> for StartupReply {
    fn from(answer: StartupAnswer) -> Self {
        match answer {
            StartupAnswer::Assigned {
                pin,
                command,
                command_at,
            } => StartupReply::Assigned {
                pin,
                command,
                command_at,
            },
            StartupAnswer::Leased { request_id } => StartupReply::Leased { request_id },
            StartupAnswer::Collect { requested_at } => StartupReply::Collect { requested_at },
            StartupAnswer::Waiting => StartupReply::Waiting,
        }
    }
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A VM's long-poll for its assignment or a final-sync request")
        .json_body::<StartupPoll>()
        .answers::<StartupReply>(
            200,
            "The assignment, the lease, a final-sync request, or `waiting` after the long-poll.",
        )
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: StartupPoll = json_body(&req)?;
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
        ok_typed(&StartupReply::from(answer))
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
