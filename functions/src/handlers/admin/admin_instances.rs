//! `GET /admin/instances` (admin): every VM with its state; JSON for
//! `Accept: application/json` (the dashboard refreshes from it), HTML otherwise.

use http::StatusCode;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{no_store, ok_json, respond, wants_json, Principal, Request, Response};
use crate::pages::{render, InstancesPage};
use crate::views::FleetView;

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let vms = admin::list_vms((&state).into()).await?;
        let fleet = FleetView::new(
            &vms,
            state.clock.now_millis(),
            shared::usecases::participant::live_since((&state).into()),
        );
        let mut resp = if wants_json(&req) {
            ok_json(serde_json::to_value(&fleet).map_err(|e| shared::Error::Internal(e.into()))?)?
        } else {
            render(StatusCode::OK, &InstancesPage { fleet })?
        };
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}
