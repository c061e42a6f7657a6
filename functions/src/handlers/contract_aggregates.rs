//! `GET /api/contract-aggregates/{gpu_type}` (API key or admin): contract pools with hosts,
//! GPU use and tenant.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{path_param, require_api_key_or_admin, respond_status, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        let caller = require_api_key_or_admin(&state, &req).await?;
        // Key holders see their own allocations; others' appear as anonymous usage.
        let viewer = caller.as_ref().map(|c| c.user_id.as_str());
        let gpu_type = path_param(&req, "gpu_type")?;
        let data = pools::contract_aggregates(&state, &gpu_type, viewer).await?;
        Ok((data, "Contract aggregates retrieved successfully"))
    })
    .await
}
