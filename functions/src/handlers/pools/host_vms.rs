//! `GET /api/host-vms/{hostname}` (API key or admin): what runs on a host.

use shared::usecases::pools;
use shared::AppState;

use super::views::HostVmsView;
use crate::http::{data, path_param, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("What runs on a host")
        .answers::<HostVmsView>(200, "The host's allocations.")
        .errors(&[404])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond_status(async {
        let caller = principal.caller()?.cloned();
        // Key holders see their own allocations; others' appear as anonymous usage.
        let viewer = caller.as_ref().map(|c| c.user_id.as_str());
        let hostname = path_param(&req, "hostname")?;
        let host = pools::host_vms((&state).into(), &hostname, viewer).await?;
        Ok((
            data(&HostVmsView::new(&host)),
            "Host allocations retrieved successfully",
        ))
    })
    .await
}
