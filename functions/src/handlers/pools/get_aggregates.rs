//! `GET /api/aggregates/{gpu_type}` and `GET /api/aggregates/{gpu_type}/{aggregate_type}`
//! (API key or admin): a GPU type's pools by kind (hosts, GPU use) and the overview; 404 for
//! an unknown type or kind.

use lambda_http::RequestExt;
use shared::usecases::pools;
use shared::AppState;

use super::views::AggregatesView;
use crate::http::{data, path_param, respond_status, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("A GPU type's pools by kind with hosts and GPU use, or one kind")
        .answers::<AggregatesView>(
            200,
            "Every kind by name with `gpu_overview`, or the one kind asked for.",
        )
        .errors(&[404])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond_status(async {
        let caller = principal.caller()?.cloned();
        // Key holders see their own allocations; others' appear as anonymous usage.
        let viewer = caller.as_ref().map(|c| c.user_id.as_str());
        let gpu_type = path_param(&req, "gpu_type")?;
        let kind = req
            .path_parameters()
            .first("aggregate_type")
            .map(str::to_string);
        let found = pools::aggregates((&state).into(), &gpu_type, kind.as_deref(), viewer).await?;
        Ok((
            data(&AggregatesView::new(&found)),
            "Aggregates retrieved successfully",
        ))
    })
    .await
}
