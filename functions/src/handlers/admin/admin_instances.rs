//! `GET /admin/instances` (admin): every VM with its state; JSON for
//! `Accept: application/json` (the dashboard refreshes from it), HTML otherwise.

use http::StatusCode;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{no_store, ok_typed, respond, wants_json, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::pages::{render, InstancesPage};
use crate::views::FleetView;

pub fn api() -> ApiDoc {
    ApiDoc::new("Every VM with its state (JSON with `Accept: application/json`, else HTML)")
        .answers::<FleetView>(200, "The fleet, as JSON for `Accept: application/json`.")
        .html(200, "The fleet's table, for browsers.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let vms = admin::list_vms((&state).into()).await?;
        let fleet = FleetView::new(
            &vms,
            state.clock.now_millis(),
            shared::usecases::participant::live_since((&state).into()),
        );
        let mut resp = if wants_json(&req) {
            ok_typed(&fleet)?
        } else {
            render(StatusCode::OK, &InstancesPage { fleet })?
        };
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;
    use shared::domain::VmChange;

    fn final_sync_of(resp: &crate::http::Response) -> serde_json::Value {
        body_json(resp)["vms"][0]["final_sync"].clone()
    }

    /// The live table shows each VM's final sync while a destroy waits for it.
    #[tokio::test]
    async fn shows_each_vms_final_sync_while_a_destroy_waits() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("admin-instances/json.json")).await;
        assert_eq!(final_sync_of(&resp), serde_json::Value::Null);
        for (change, shown) in [
            (VmChange::CollectRequested(1_000), "syncing"),
            (VmChange::CollectAnswered(1_000), "synced"),
        ] {
            t.state
                .store
                .update_vm("vm-1", &change, 2_000)
                .await
                .unwrap();
            let resp = serve(t.state.clone(), event("admin-instances/json.json")).await;
            assert_eq!(final_sync_of(&resp), shown);
        }
    }
}
