//! `GET /admin/logs/{hostname}` (admin): the log viewer for one VM. It follows new lines
//! through `GET /api/vm-logs/{hostname}?after=` and can show errors only.

use http::StatusCode;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{no_store, path_param, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::pages::{render, LogsPage};

pub fn api() -> ApiDoc {
    ApiDoc::new("The log viewer for one VM").html(200, "The log viewer page.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let hostname = path_param(&req, "hostname")?;
        let vm = admin::get_vm((&state).into(), &hostname).await?;
        let mut resp = render(
            StatusCode::OK,
            &LogsPage {
                hostname: &vm.hostname,
                status: vm.status.as_str(),
                cap_kib: state.config.log_cap_bytes / 1024,
            },
        )?;
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}
