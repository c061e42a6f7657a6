//! Server-rendered pages. Askama escapes every interpolated value for HTML, so a hostname
//! or email containing markup is shown as text.

use askama::Template;
use http::StatusCode;
use shared::Error;

use crate::http::{html_response, ApiError, Response};
use crate::views::{FleetView, MetricsChart, WorkView};

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub free_count: u64,
    pub error: Option<&'a str>,
    pub email: &'a str,
    pub crd_command: &'a str,
    pub join_code_required: bool,
    /// The email already holds a VM that this browser did not prove is theirs.
    pub held_elsewhere: bool,
}

#[derive(Template)]
#[template(path = "success.html")]
pub struct SuccessPage<'a> {
    pub hostname: &'a str,
    pub pin: &'a str,
    pub email: &'a str,
    pub rejoined: bool,
    /// The private seat link, shown once at the claim (`None` for a returning participant).
    pub seat_url: Option<String>,
    pub seat_path: String,
}

#[derive(Template)]
#[template(path = "seat.html")]
pub struct SeatPage<'a> {
    pub hostname: &'a str,
    pub pin: &'a str,
    pub email: &'a str,
    pub status: &'a str,
    pub status_reason: Option<&'a str>,
    pub in_use: bool,
    pub dead: bool,
    pub command_sent: String,
    /// Where the page's forms post: `/seat` (cookie) or `/seat/<token>` (link).
    pub base: String,
    pub message: Option<&'a str>,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "no_seat.html")]
pub struct NoSeatPage;

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage<'a> {
    pub fleet: FleetView,
    pub work: WorkView,
    pub costs: crate::views::CostsView,
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

/// The seat page of `vm` (a participant's view of their VM), with an outcome line.
pub fn render_seat(
    status: StatusCode,
    vm: &shared::domain::Vm,
    live_since: i64,
    base: String,
    message: Option<&str>,
    error: Option<&str>,
) -> Result<Response, ApiError> {
    let assignment = vm
        .assignment
        .as_ref()
        .ok_or_else(|| ApiError::Core(Error::NotFound("seat".into())))?;
    let mut resp = render(
        status,
        &SeatPage {
            hostname: &vm.hostname,
            pin: &assignment.pin,
            email: &assignment.email,
            status: vm.status.as_str(),
            status_reason: vm.status_reason.as_deref(),
            in_use: vm.in_use,
            dead: vm.is_dead(live_since),
            command_sent: shared::domain::rfc3339(assignment.command_at),
            base,
            message,
            error,
        },
    )?;
    crate::http::no_store(&mut resp);
    Ok(resp)
}

/// The page for a missing, malformed or replaced seat credential (404).
pub fn render_no_seat() -> Result<Response, ApiError> {
    let mut resp = render(StatusCode::NOT_FOUND, &NoSeatPage)?;
    crate::http::no_store(&mut resp);
    Ok(resp)
}
