//! `POST /api/preview-migration` (admin) `{host, source_aggregate,
//! target_aggregate}`: the commands execute would run and the validation; changes nothing.

use shared::usecases::pools;
use shared::AppState;

use super::views::MigrationPreview;
use super::MigrationRequest;
use crate::http::{data, json_body, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("What moving a host to another pool would run; changes nothing")
        .json_body::<MigrationRequest>()
        .answers::<MigrationPreview>(200, "The commands and the checks.")
        .errors(&[400, 404])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: MigrationRequest = json_body(&req)?;
        let plan = pools::plan((&state).into(), &body.migration()?).await?;
        Ok((
            data(&MigrationPreview::new(&plan)),
            "Migration preview generated",
        ))
    })
    .await
}
