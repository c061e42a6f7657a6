//! `GET /api/contract-aggregates/{gpu_type}` (API key or admin): contract pools with hosts,
//! GPU use and tenant.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{path_param, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond_status(async {
        let caller = principal.caller()?.cloned();
        // Key holders see their own allocations; others' appear as anonymous usage.
        let viewer = caller.as_ref().map(|c| c.user_id.as_str());
        let gpu_type = path_param(&req, "gpu_type")?;
        let pools = pools::contract_aggregates((&state).into(), &gpu_type, viewer).await?;
        Ok((
            super::views::contract_aggregates(&pools),
            "Contract aggregates retrieved successfully",
        ))
    })
    .await
}
