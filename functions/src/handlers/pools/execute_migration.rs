//! `POST /api/execute-migration` (admin) `{host, source_aggregate, target_aggregate,
//! force?}`: moves the host (store and EC2 tag), verifies both; 409 for a host with live
//! allocations unless `force: true`.

use shared::usecases::pools;
use shared::AppState;

use super::views::MigratedView;
use super::MigrationRequest;
use crate::http::{data, json_body, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("Move a host to another pool (store and EC2 tag), verified")
        .json_body::<MigrationRequest>()
        .answers::<MigratedView>(200, "Moved and read back.")
        // 400: refused by the checks; 404: unknown host or pool; 409: live allocations
        // without force, or moved by someone else meanwhile; 503: partial or unverified.
        .errors(&[400, 404, 409, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: MigrationRequest = json_body(&req)?;
        let migrated = pools::execute((&state).into(), &body.migration()?, true).await?;
        Ok((
            data(&MigratedView::new(&migrated)),
            "Migration executed and verified",
        ))
    })
    .await
}
