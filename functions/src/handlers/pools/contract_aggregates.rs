//! `GET /api/contract-aggregates/{gpu_type}` (API key or admin): contract pools with hosts,
//! GPU use and tenant.

use shared::usecases::pools;
use shared::AppState;

use super::views::ContractPoolView;
use crate::http::{data, path_param, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("A GPU type's contract pools with their hosts, GPU use and tenant")
        .answers_list::<ContractPoolView>(200, "The contract pools (maybe none).")
        .errors(&[404])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond_status(async {
        let caller = principal.caller()?.cloned();
        // Key holders see their own allocations; others' appear as anonymous usage.
        let viewer = caller.as_ref().map(|c| c.user_id.as_str());
        let gpu_type = path_param(&req, "gpu_type")?;
        let pools = pools::contract_aggregates((&state).into(), &gpu_type, viewer).await?;
        Ok((
            data(&super::views::contract_aggregates(&pools)),
            "Contract aggregates retrieved successfully",
        ))
    })
    .await
}
