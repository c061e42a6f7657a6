//! `GET /admin` (admin): the fleet table with launch and destroy forms.

use http::StatusCode;
use shared::AppState;

use crate::handlers::launch::admin_page;
use crate::http::{require_admin, respond, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond(async {
        require_admin(&state, &req)?;
        admin_page(&state, StatusCode::OK, None, None).await
    })
    .await
}
