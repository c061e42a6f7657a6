//! `POST /api/execute-migration` (admin) `{host, source_aggregate, target_aggregate,
//! force?}`: moves the host (store and EC2 tag), verifies both; 409 for a host with live
//! allocations unless `force: true`.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let migrated = pools::execute((&state).into(), &super::migration(&body)?, true).await?;
        Ok((
            super::views::migrated(&migrated),
            "Migration executed and verified",
        ))
    })
    .await
}
