//! `GET /health`: checks the store (and the queue where it is a separate service) and
//! answers 200 `ok` or 503 `degraded` naming what failed.

use http::StatusCode;
use serde::Serialize;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{typed_json_response, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// The service's health and that of each dependency.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every check passed, else `degraded`.
    status: HealthStatus,
    /// Always `gpufleet`.
    service: &'static str,
    /// The server's version.
    version: &'static str,
    checks: HealthChecks,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// Each dependency's state (the cause of a failure is only logged).
#[derive(Serialize, ToSchema)]
pub struct HealthChecks {
    store: CheckOutcome,
    queue: CheckOutcome,
}

#[derive(Clone, Copy, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckOutcome {
    Ok,
    Unavailable,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Health of the service and its dependencies")
        .answers::<Health>(200, "Every dependency answered.")
        .answers::<Health>(503, "A dependency failed; `checks` names it.")
}

fn check(name: &str, result: shared::Result<()>) -> CheckOutcome {
    match result {
        Ok(()) => CheckOutcome::Ok,
        Err(e) => {
            // The cause goes to the log; the answer only names the dependency.
            tracing::error!(dependency = name, error = ?e, "health check failed");
            CheckOutcome::Unavailable
        }
    }
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    let checks = HealthChecks {
        store: check("store", state.store.ping().await),
        queue: check("queue", state.queue.ping().await),
    };
    let healthy = checks.store == CheckOutcome::Ok && checks.queue == CheckOutcome::Ok;
    let (status, word) = if healthy {
        (StatusCode::OK, HealthStatus::Ok)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Degraded)
    };
    let mut resp = typed_json_response(
        status,
        &Health {
            status: word,
            service: "gpufleet",
            version: env!("CARGO_PKG_VERSION"),
            checks,
        },
    );
    crate::http::no_store(&mut resp);
    resp
}
