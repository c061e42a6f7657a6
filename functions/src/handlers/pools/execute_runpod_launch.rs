//! `POST /api/execute-runpod-launch` (admin) `{hostname, image_name, image_id}`: launches an
//! added machine of the host's instance type with the image into its runpod pool.

use shared::usecases::pools;
use shared::AppState;

use super::views::RunpodLaunchedView;
use super::RunpodLaunchRequest;
use crate::http::{data, json_body, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("Launch a machine of a host's instance type into its runpod pool")
        .json_body::<RunpodLaunchRequest>()
        .answers::<RunpodLaunchedView>(200, "The launch is under way.")
        // 400: bad image or launch rejected; 404: unknown host; 503: no capacity or the
        // provider is unavailable.
        .errors(&[400, 404, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        let body: RunpodLaunchRequest = json_body(&req)?;
        let launched = pools::runpod_launch((&state).into(), &body.launch()?).await?;
        Ok((data(&RunpodLaunchedView::new(&launched)), "Launch started"))
    })
    .await
}
