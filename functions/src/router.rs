//! Runs a route of the table: the one pipeline every request goes through, on AWS and
//! locally. Origin check → admin login throttle → (v1 API) per-address rate limit →
//! authentication into a `Principal` → (v1 API, key holders) per-key rate limit → the
//! handler, with the caller known to the command log. Errors before the handler are
//! answered in the route's envelope.

use shared::usecases::rate_limit::RateDecision;
use shared::AppState;

use crate::http::{
    authenticate, check_admin_login, check_route_origin, hit_address, hit_key, rate_headers,
    too_many, ApiError, Envelope, Principal, Request, Response,
};
use crate::routes::Route;

pub async fn serve_route(route: &Route, state: AppState, req: Request) -> Response {
    let mut limits: Option<RateDecision> = None;
    let mut resp = match admit(route, &state, &req, &mut limits).await {
        Ok(principal) => match principal.label(&state) {
            Some(label) => {
                shared::domain::command_log::as_caller(
                    label,
                    (route.handler)(state, principal, req),
                )
                .await
            }
            None => (route.handler)(state, principal, req).await,
        },
        Err(Refused::Error(e)) => e.render(route.envelope),
        Err(Refused::RateLimited(decision)) => too_many(&decision),
    };
    if let Some(decision) = &limits {
        rate_headers(&mut resp, decision);
    }
    resp
}

enum Refused {
    Error(ApiError),
    RateLimited(RateDecision),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused::Error(e)
    }
}

/// Everything before the handler; `limits` keeps the rate decision so far, for the headers.
async fn admit(
    route: &Route,
    state: &AppState,
    req: &Request,
    limits: &mut Option<RateDecision>,
) -> Result<Principal, Refused> {
    check_route_origin(route.access, req)?;
    check_admin_login(route.access, state, req).await?;
    let limited = route.envelope == Envelope::Success;
    if limited {
        // Counted before authentication, so floods of bad keys are limited too. (Wrong
        // passwords were counted by the login throttle: one write per refusal.)
        let by_address = hit_address(state, req).await?;
        *limits = Some(by_address);
        if !by_address.allowed {
            return Err(Refused::RateLimited(by_address));
        }
    }
    let principal = authenticate(route.access, state, req).await?;
    if let (true, Principal::User(caller)) = (limited, &principal) {
        let by_key = hit_key(state, caller).await?;
        let combined = match limits.take() {
            Some(d) => d.combine(by_key),
            None => by_key,
        };
        *limits = Some(combined);
        if !combined.allowed {
            return Err(Refused::RateLimited(combined));
        }
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::*;
    use crate::http::Access;
    use crate::routes::ROUTES;
    use lambda_http::Body;

    fn request(route: &Route, authorization: Option<&str>) -> Request {
        let path = route.path.replace(['{', '}'], "");
        let mut req = http::Request::builder()
            .method(route.method.clone())
            .uri(&path)
            .header("content-type", "application/json");
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        req.body(Body::Text("{}".into())).unwrap()
    }

    /// `counted`: the request reached the rate limits (a wrong password is refused before).
    fn assert_envelope(route: &Route, resp: &Response, counted: bool) {
        let body = body_json(resp);
        let what = format!("{} {}: {body}", route.method, route.path);
        match route.envelope {
            Envelope::Plain => {
                assert!(
                    body["error"].is_string() && body["code"].is_string(),
                    "{what}"
                );
                assert!(
                    body.get("success").is_none() && body.get("status").is_none(),
                    "{what}"
                );
            }
            Envelope::Success => {
                assert_eq!(body["success"], false, "{what}");
                let headers = resp.headers().contains_key("x-ratelimit-limit");
                assert_eq!(headers, counted, "{what}");
            }
            Envelope::Status => {
                assert_eq!(body["status"], "error", "{what}");
                assert!(body["details"]["code"].is_string(), "{what}");
            }
        }
    }

    #[tokio::test]
    async fn refusals_before_the_handler_come_in_the_routes_envelope() {
        let t = TestState::new();
        // Failed admin logins are throttled along the way (429): in the envelope too.
        let mut refused = 0;
        for route in ROUTES {
            if matches!(route.access, Access::Public | Access::Seat) {
                continue;
            }
            let bad_admin = "Basic YWRtaW46bm90LXRoZS1wYXNzd29yZA=="; // admin:not-the-password
            for authorization in [None, Some("Bearer gpf_not-a-key"), Some(bad_admin)] {
                let resp = serve_route(route, t.state.clone(), request(route, authorization)).await;
                let status = resp.status().as_u16();
                assert!(
                    matches!(status, 400 | 401 | 429),
                    "{} {} with {authorization:?}: {status}",
                    route.method,
                    route.path
                );
                let wrong_password = authorization.is_some_and(|a| a.starts_with("Basic"))
                    && matches!(
                        route.access,
                        Access::Admin | Access::ApiKeyOrAdmin | Access::VmOrAdmin(_)
                    );
                assert_envelope(route, &resp, !wrong_password);
                refused += 1;
            }
        }
        assert!(refused > 100, "{refused}");
    }

    #[tokio::test]
    async fn handlers_get_the_principal_their_access_names() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let vm_route = crate::routes::of_function("report-vm-status").unwrap();
        let req = |token: &str| {
            http::Request::builder()
                .method("POST")
                .uri("/api/vm-status")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::Text(
                    r#"{"hostname": "vm-1", "status": "running"}"#.into(),
                ))
                .unwrap()
        };
        let resp = serve_route(vm_route, t.state.clone(), req("token-vm-1")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        // Another VM's token, or an admin's password as a bearer token, is not this VM.
        t.running_vm("vm-2").await;
        for token in ["token-vm-2", ADMIN_PASSWORD] {
            let resp = serve_route(vm_route, t.state.clone(), req(token)).await;
            assert_eq!(resp.status(), 401, "{token}");
        }
    }

    #[test]
    fn only_an_admin_gets_everyones_view() {
        let caller = shared::domain::api_keys::Caller {
            key_id: "k".into(),
            user_id: "alice".into(),
            gpu_quota: 1,
            budget_usd: None,
        };
        assert!(matches!(Principal::Admin.caller(), Ok(None)));
        let user = Principal::User(caller);
        assert_eq!(user.caller().unwrap().unwrap().user_id, "alice");
        assert!(Principal::Anonymous.caller().is_err());
        assert!(Principal::Anonymous.user().is_err());
        assert!(Principal::Admin.user().is_err());
    }
}
