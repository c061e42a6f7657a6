//! `POST /api/preview-migration` (admin) `{host, source_aggregate,
//! target_aggregate}`: the commands execute would run and the validation; changes nothing.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, respond_status, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: serde_json::Value = json_body(&req)?;
        let plan = pools::plan((&state).into(), &super::migration(&body)?).await?;
        Ok((
            super::views::migration_preview(&plan),
            "Migration preview generated",
        ))
    })
    .await
}
