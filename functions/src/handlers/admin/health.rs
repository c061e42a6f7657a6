//! `GET /health`: checks the store (and the queue where it is a separate service) and
//! answers 200 `ok` or 503 `degraded` naming what failed.

use http::StatusCode;
use serde_json::json;
use shared::AppState;

use crate::http::{json_response, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    let mut checks = serde_json::Map::new();
    let mut healthy = true;
    for (name, result) in [
        ("store", state.store.ping().await),
        ("queue", state.queue.ping().await),
    ] {
        let value = match result {
            Ok(()) => json!("ok"),
            Err(e) => {
                // The cause goes to the log; the answer only names the dependency.
                tracing::error!(dependency = name, error = ?e, "health check failed");
                healthy = false;
                json!("unavailable")
            }
        };
        checks.insert(name.to_string(), value);
    }
    let (status, word) = if healthy {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    let mut resp = json_response(
        status,
        &json!({
            "status": word,
            "service": "gpufleet",
            "version": env!("CARGO_PKG_VERSION"),
            "checks": checks,
        }),
    );
    crate::http::no_store(&mut resp);
    resp
}
