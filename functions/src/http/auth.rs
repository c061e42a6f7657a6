//! Who is calling. Each route declares its `Access`; before its handler runs, the router
//! checks the origin (`check_route_origin`), throttles admin logins (`check_admin_login`)
//! and turns the credentials into one `Principal` (`authenticate`). Handlers receive the
//! principal and never read credentials themselves.

use base64::Engine as _;
use http::header;
use shared::domain::api_keys::{hash_key, looks_like_key, Caller};
use shared::usecases::vm_agent::{self, AuthenticatedVm};
use shared::{AppState, Error};

use super::{
    bearer_token, body_field, client_ip, json_body, path_param, site_url, ApiError, Request,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (participants, the claim page).
    Public,
    /// A participant, with their seat token (the seat cookie, or the seat link's path); the
    /// seat use cases look the token up, so the principal is anonymous.
    Seat,
    /// A VM, with its own bearer token, for the hostname found where the route says.
    Vm(VmHostname),
    /// A VM with its own token, or an admin (Basic) forwarding for it.
    VmOrAdmin(VmHostname),
    /// An admin, with HTTP Basic credentials.
    Admin,
    /// A user's API key (`Authorization: Bearer gpf_…`).
    ApiKey,
    /// A user's API key, or an admin (Basic) acting on everyone's.
    ApiKeyOrAdmin,
}

/// Where a VM route names the VM whose token must be presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmHostname {
    /// The `{hostname}` path parameter.
    InPath,
    /// A string field of the JSON body.
    InBody(&'static str),
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Public and seat routes: nobody proved anything yet.
    Anonymous,
    Vm(Box<AuthenticatedVm>),
    /// The holder of an active API key.
    User(Caller),
    Admin,
}

impl Principal {
    /// Whose data a key-or-admin route acts on: the key holder's own (`Some`), or everyone's
    /// for an admin (`None`). Anyone else is refused, so a route declared with another
    /// access can never hand out the admin's view.
    pub fn caller(&self) -> Result<Option<&Caller>, ApiError> {
        match self {
            Principal::User(caller) => Ok(Some(caller)),
            Principal::Admin => Ok(None),
            Principal::Anonymous | Principal::Vm(_) => Err(ApiError::Core(Error::Unauthorized)),
        }
    }

    /// The API-key caller of a route only a key may call.
    pub fn user(&self) -> Result<&Caller, ApiError> {
        match self {
            Principal::User(caller) => Ok(caller),
            _ => Err(ApiError::Core(Error::Unauthorized)),
        }
    }

    /// The VM of a VM route.
    pub fn vm(&self) -> Result<&AuthenticatedVm, ApiError> {
        match self {
            Principal::Vm(vm) => Ok(vm),
            _ => Err(ApiError::Core(Error::Unauthorized)),
        }
    }

    /// How the command log names this principal: `user:<id>` for an API key,
    /// `admin:<name>` for an admin.
    pub fn label(&self, state: &AppState) -> Option<String> {
        match self {
            Principal::User(c) => Some(format!("user:{}", c.user_id)),
            Principal::Admin => Some(format!("admin:{}", state.config.admin_user)),
            Principal::Anonymous | Principal::Vm(_) => None,
        }
    }
}

/// The principal of a request to a route with `access`, or why it has none (401; 400 when a
/// VM route's hostname is missing).
pub async fn authenticate(
    access: Access,
    state: &AppState,
    req: &Request,
) -> Result<Principal, ApiError> {
    match access {
        Access::Public | Access::Seat => Ok(Principal::Anonymous),
        Access::Admin => require_admin(state, req).map(|()| Principal::Admin),
        Access::ApiKey => api_key(state, req).await.map(Principal::User),
        Access::ApiKeyOrAdmin if require_admin(state, req).is_ok() => Ok(Principal::Admin),
        Access::ApiKeyOrAdmin => api_key(state, req).await.map(Principal::User),
        Access::VmOrAdmin(_) if carries_basic(req) => {
            require_admin(state, req).map(|()| Principal::Admin)
        }
        Access::Vm(at) | Access::VmOrAdmin(at) => {
            let hostname = vm_hostname(req, at)?;
            let vm = vm_agent::authenticate(&*state.store, &hostname, bearer_token(req)).await?;
            Ok(Principal::Vm(Box::new(vm)))
        }
    }
}

fn vm_hostname(req: &Request, at: VmHostname) -> Result<String, ApiError> {
    match at {
        VmHostname::InPath => path_param(req, "hostname"),
        VmHostname::InBody(field) => body_field(&json_body(req)?, field),
    }
}

/// The caller of `Authorization: Bearer gpf_…` with an active key.
async fn api_key(state: &AppState, req: &Request) -> Result<Caller, ApiError> {
    let presented = bearer_token(req)
        .filter(|k| looks_like_key(k))
        .ok_or(ApiError::Core(Error::Unauthorized))?;
    match state.store.api_key_by_hash(&hash_key(presented)).await? {
        Some(key) if key.is_active() => Ok(Caller::of(&key)),
        _ => Err(ApiError::Core(Error::Unauthorized)),
    }
}

/// Checks HTTP Basic admin credentials (constant-time, see `AdminCredentials`).
fn require_admin(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(credentials) = credentials else {
        return Err(ApiError::AdminAuth);
    };
    let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
    if state.admin.verify(user, password) {
        Ok(())
    } else {
        Err(ApiError::AdminAuth)
    }
}

/// Whether a browser could have sent this request with credentials it attaches by itself
/// (a cached Basic login, the seat cookie) or to a page that acts on whoever submits it
/// (the claim form): then a page on another site could make the browser send it.
fn carries_ambient_credentials(access: Access, req: &Request) -> bool {
    match access {
        Access::Public | Access::Seat | Access::Admin => true,
        Access::ApiKeyOrAdmin | Access::VmOrAdmin(_) => carries_basic(req),
        // Bearer tokens are never attached by a browser on its own.
        Access::Vm(_) | Access::ApiKey => false,
    }
}

/// Refuses a state-changing request that a browser marks as coming from another site: a
/// `Sec-Fetch-Site` other than `same-origin`/`none`, or an `Origin` that is not exactly this
/// site (scheme and host; `null`, sent by sandboxed frames and some redirects, is refused).
/// Clients that are not browsers send neither header and pass.
pub fn require_same_origin(req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if site != "same-origin" && site != "none" {
            return Err(ApiError::CrossSite);
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !origin.eq_ignore_ascii_case(&site_url(req)) {
            return Err(ApiError::CrossSite);
        }
    }
    Ok(())
}

/// The one cross-site check, applied from the route table to every state-changing method
/// whose route a browser could call with ambient credentials.
pub fn check_route_origin(access: Access, req: &Request) -> Result<(), ApiError> {
    let safe = matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    if safe || !carries_ambient_credentials(access, req) {
        return Ok(());
    }
    require_same_origin(req)
}

/// Basic credentials on a route an admin may call: refused (429) while the client address
/// has too many recent failures, a wrong password counted (one store write) and answered
/// here, before the handler, so it costs no other write. A correct password only reads.
pub async fn check_admin_login(
    access: Access,
    state: &AppState,
    req: &Request,
) -> Result<(), ApiError> {
    use shared::usecases::rate_limit;
    let admits_admin = matches!(
        access,
        Access::Admin | Access::ApiKeyOrAdmin | Access::VmOrAdmin(_)
    );
    if !admits_admin || !carries_basic(req) {
        return Ok(());
    }
    let ip = client_ip(req);
    if let Some(retry_after) = rate_limit::login_throttled(
        state.into(),
        &ip,
        state.config.admin_login_failures_per_minute,
    )
    .await?
    {
        return Err(ApiError::TooManyLogins(retry_after));
    }
    if require_admin(state, req).is_ok() {
        return Ok(());
    }
    match rate_limit::login_failed(
        state.into(),
        &ip,
        state.config.admin_login_failures_per_minute,
    )
    .await?
    {
        Some(retry_after) => Err(ApiError::TooManyLogins(retry_after)),
        None => Err(ApiError::AdminAuth),
    }
}

fn carries_basic(req: &Request) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic"))
}
