//! Server-rendered pages. Askama escapes every interpolated value for HTML, so a hostname
//! or email containing markup is shown as text.

use askama::Template;
use http::StatusCode;
use shared::domain::Vm;
use shared::Error;

use crate::http::{html_response, ApiError, Response};

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

/// One row of the admin table, pre-formatted.
pub struct VmRow {
    pub hostname: String,
    pub status: &'static str,
    pub reason: Option<String>,
    pub gpu: &'static str,
    pub in_use: bool,
    pub email: String,
    pub created: String,
}

impl From<&Vm> for VmRow {
    fn from(vm: &Vm) -> Self {
        VmRow {
            hostname: vm.hostname.clone(),
            status: vm.status.as_str(),
            reason: vm.status_reason.clone(),
            gpu: vm.gpu_health.as_str(),
            in_use: vm.in_use,
            email: vm
                .assignment
                .as_ref()
                .map(|a| a.email.clone())
                .unwrap_or_default(),
            created: crate::http::rfc3339(vm.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage<'a> {
    pub vms: Vec<VmRow>,
    pub free_count: u64,
    pub max_launch: u32,
    pub message: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Renders a page; a template failure is an internal error (logged, never shown).
pub fn render(status: StatusCode, page: &impl Template) -> Result<Response, ApiError> {
    let html = page
        .render()
        .map_err(|e| ApiError::Core(Error::Internal(anyhow::anyhow!("rendering a page: {e}"))))?;
    Ok(html_response(status, html))
}
