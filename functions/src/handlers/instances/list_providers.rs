//! `GET /api/v1/providers` (API key): the providers this deployment has credentials for.

use shared::usecases::instances;
use shared::AppState;

use crate::http::{respond_v1, Principal, Request, Response, V1Ok};

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    let state = &state;
    respond_v1(async {
        V1Ok::ok(
            "Providers retrieved successfully",
            serde_json::json!(instances::providers(state.into())),
        )
    })
    .await
}
