//! `GET /api/v1/api-keys` (admin): every key's id, user, quota and state (never the key).

use shared::AppState;

use crate::http::{ok_json, respond, Principal, Request, Response};
use crate::views::api_key_json;

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let keys = state.store.list_api_keys().await?;
        ok_json(serde_json::Value::Array(
            keys.iter().map(api_key_json).collect(),
        ))
    })
    .await
}
