//! `POST /api/preview-migration` (admin) `{host, source_aggregate,
//! target_aggregate}`: the commands execute would run and the validation; changes nothing.

use serde_json::json;
use shared::usecases::pools;
use shared::AppState;

use crate::http::{json_body, require_admin, respond_status, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        require_admin(&state, &req)?;
        let body: serde_json::Value = json_body(&req)?;
        let plan = pools::plan(&state, &body).await?;
        Ok((
            json!({"commands": plan.commands, "validation": plan.validation, "allowed": plan.ok}),
            "Migration preview generated",
        ))
    })
    .await
}
