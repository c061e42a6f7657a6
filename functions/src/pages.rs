//! Server-rendered pages. Askama escapes every interpolated value for HTML, so a hostname
//! or email containing markup is shown as text.

use askama::Template;
use http::StatusCode;
use shared::Error;

use crate::http::{html_response, ApiError, Response};
use crate::views::{FleetView, MetricsChart};

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub free_count: u64,
    pub error: Option<&'a str>,
    pub email: &'a str,
    pub crd_command: &'a str,
}

#[derive(Template)]
#[template(path = "success.html")]
pub struct SuccessPage<'a> {
    pub hostname: &'a str,
    pub pin: &'a str,
    pub email: &'a str,
    pub rejoined: bool,
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage<'a> {
    pub fleet: FleetView,
    pub max_launch: u32,
    pub message: Option<&'a str>,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "instances.html")]
pub struct InstancesPage {
    pub fleet: FleetView,
}

#[derive(Template)]
#[template(path = "logs.html")]
pub struct LogsPage<'a> {
    pub hostname: &'a str,
    pub status: &'a str,
    pub cap_kib: usize,
}

#[derive(Template)]
#[template(path = "metrics.html")]
pub struct MetricsPage {
    pub chart: MetricsChart,
}

/// Renders a page; a template failure is an internal error (logged, never shown).
pub fn render(status: StatusCode, page: &impl Template) -> Result<Response, ApiError> {
    let html = page
        .render()
        .map_err(|e| ApiError::Core(Error::Internal(anyhow::anyhow!("rendering a page: {e}"))))?;
    Ok(html_response(status, html))
}
