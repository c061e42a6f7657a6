//! `GET /admin/metrics` (admin): startup time per VM by stage, as an SVG bar chart drawn on
//! the server, with the median and p90 totals.

use http::StatusCode;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{no_store, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::pages::{render, MetricsPage};

pub fn api() -> ApiDoc {
    ApiDoc::new("Startup time per VM by stage (an SVG chart)").html(200, "The chart page.")
}
use crate::views::MetricsChart;

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let vms = admin::list_vms((&state).into()).await?;
        let mut resp = render(
            StatusCode::OK,
            &MetricsPage {
                chart: MetricsChart::new(&vms),
            },
        )?;
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}
