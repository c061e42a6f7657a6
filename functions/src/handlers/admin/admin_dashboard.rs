//! `GET /admin` (admin): the fleet with live status, counts by state, launch with progress,
//! destroy with confirmation.

use http::StatusCode;
use shared::AppState;

use super::launch::admin_page;
use crate::http::{respond, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("The admin dashboard").html(200, "The dashboard.")
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async { admin_page(&state, StatusCode::OK, None, None).await }).await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn renders_the_fleet() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("admin-dashboard/get.json")).await;
        assert_eq!(resp.status(), 200);
        let html = body_text(&resp);
        assert!(html.contains("data-hostname=\"vm-1\""), "{html}");
        assert!(html.contains("/admin/logs/vm-1"));
    }
}
