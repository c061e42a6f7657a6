//! `GET /api/host-vms/{hostname}` (API key or admin): what runs on a host.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{path_param, require_api_key_or_admin, respond_status, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_api_key_or_admin(&state, &req).await?;
        let hostname = path_param(&req, "hostname")?;
        let data = pools::host_vms(&state, &hostname).await?;
        Ok((data, "Host allocations retrieved successfully"))
    })
    .await
}
