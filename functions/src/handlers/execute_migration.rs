//! `POST /api/execute-migration` (API key or admin) `{host, source_aggregate,
//! target_aggregate, force?}`: moves the host (store and EC2 tag), verifies both; 409 for a
//! host with live allocations unless an admin sends `force: true`.

use shared::usecases::pools;
use shared::AppState;

use crate::http::{
    json_body, require_api_key_or_admin, require_same_origin, respond_status, Request, Response,
};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond_status(async {
        let caller = require_api_key_or_admin(&state, &req).await?;
        if caller.is_none() {
            require_same_origin(&req)?;
        }
        let body: serde_json::Value = json_body(&req)?;
        let data = shared::domain::command_log::as_caller(
            crate::http::caller_label(&state, caller.as_ref()),
            pools::execute(&state, &body, caller.is_none()),
        )
        .await?;
        Ok((data, "Migration executed and verified"))
    })
    .await
}
