//! `GET /api/v1/api-keys` (admin): every key's id, user, quota, budget, the user's spend and
//! state (never the key).

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
        let spend =
            shared::usecases::costs::spend_by_user(&*state.store, state.clock.now_millis()).await?;
        ok_typed(
            &keys
                .iter()
                .map(|k| ApiKeyView::new(k, spend.get(&k.user_id).copied().unwrap_or_default()))
                .collect::<Vec<_>>(),
        )
    })
    .await
}
