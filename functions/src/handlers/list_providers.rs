//! `GET /api/v1/providers` (API key): the providers this deployment has credentials for.

use shared::usecases::instances;
use shared::AppState;

use crate::http::{v1, Request, Response, V1Auth, V1Ok};

pub async fn handle(state: AppState, req: Request) -> Response {
    let (state, req) = (&state, &req);
    v1(state, req, V1Auth::ApiKeyOrAdmin, |_caller| async {
        V1Ok::ok(
            "Providers retrieved successfully",
            serde_json::json!(instances::providers(state)),
        )
    })
    .await
}
