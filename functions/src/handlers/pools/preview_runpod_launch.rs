//! `POST /api/preview-runpod-launch` (admin) `{hostname, image_name, image_id}`:
//! the launch that execute would run (secrets masked) and the resources it takes.

use shared::usecases::pools;
use shared::AppState;

use super::views::RunpodPreview;
use super::RunpodLaunchRequest;
use crate::http::{data, json_body, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("The launch into a host's runpod pool execute would run; changes nothing")
        .json_body::<RunpodLaunchRequest>()
        .answers::<RunpodPreview>(200, "The command (no secrets) and the resources.")
        .errors(&[400, 404])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: RunpodLaunchRequest = json_body(&req)?;
        let plan = pools::runpod_plan((&state).into(), &body.launch()?).await?;
        Ok((data(&RunpodPreview::new(&plan)), "Launch preview generated"))
    })
    .await
}
