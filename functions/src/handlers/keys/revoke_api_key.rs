//! `DELETE /api/v1/api-keys/{key_id}` (admin): the key stops working at once.

use shared::AppState;

use crate::http::{ok_typed, path_param, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::views::ApiKeyView;

pub fn api() -> ApiDoc {
    ApiDoc::new("Revoke an API key; it stops working at once")
        .answers::<ApiKeyView>(200, "The revoked key.")
        .errors(&[404])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let id = path_param(&req, "key_id")?;
        let key = state
            .store
            .revoke_api_key(&id, state.clock.now_millis())
            .await?;
        tracing::info!(key_id = %key.key_id, user = %key.user_id, "API key revoked");
        // The key is revoked: a failed read of the spend shows zeros, not a 500.
        let mine =
            match shared::usecases::costs::spend_by_user(&*state.store, state.clock.now_millis())
                .await
            {
                Ok(spend) => spend.get(&key.user_id).copied().unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = ?e, "reading spend after a revoke");
                    Default::default()
                }
            };
        ok_typed(&ApiKeyView::new(&key, mine))
    })
    .await
}
