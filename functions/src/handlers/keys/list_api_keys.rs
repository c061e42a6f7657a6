//! `GET /api/v1/api-keys` (admin): every key's id, user, quota and state (never the key).

use shared::AppState;

use crate::http::{ok_typed, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::views::ApiKeyView;

pub fn api() -> ApiDoc {
    ApiDoc::new("Every API key, active and revoked")
        .answers_list::<ApiKeyView>(200, "The keys, without their secrets.")
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let keys = state.store.list_api_keys().await?;
        ok_typed(&keys.iter().map(ApiKeyView::new).collect::<Vec<_>>())
    })
    .await
}
