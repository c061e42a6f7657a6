//! Property tests for the HTTP edge's parsers: path matching and percent-decoding, the
//! cross-site check, bearer tokens, cookies, JSON and form bodies. None panics on any
//! input, and each keeps its promise.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed test

use http::{HeaderValue, Method};
use lambda_http::Body;
use proptest::prelude::*;

use crate::http::{
    bearer_token, check_route_origin, cookie, declares_json, form_body, json_body, ApiError,
    Request, MAX_BODY_BYTES, SEAT_COOKIE,
};
use crate::routes::{find, Access, Match, ROUTES};

const SITE: &str = "gpufleet.example";

/// Any header value HTTP can carry (visible ASCII, spaces, tabs and obs-text bytes).
fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        "[ -~]{0,60}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..60),
        Just(b"null".to_vec()),
        Just(format!("http://{SITE}").into_bytes()),
        Just(format!("HTTPS://{SITE}").into_bytes()),
        Just(b"same-origin".to_vec()),
        Just(b"none".to_vec()),
        Just(b"cross-site".to_vec()),
    ]
    .prop_filter_map("not a header value", |b| HeaderValue::from_bytes(&b).ok())
}

fn request(method: Method, headers: Vec<(&'static str, HeaderValue)>, body: Vec<u8>) -> Request {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{SITE}/admin/destroy"))
        .header("host", SITE);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body)).unwrap()
}

fn percent_encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn path_matching_is_total(path in prop_oneof![
        any::<String>(),
        "(/[a-z0-9%.{}_-]{0,12}){0,6}",
        "/api/(vm-status|v1/requests|seats|aggregates)/[%0-9A-Fa-z./é]{0,20}(/[a-z]{0,8})?",
    ]) {
        for method in [Method::GET, Method::POST, Method::DELETE, Method::PUT] {
            let _ = find(&method, &path);
        }
    }

    /// Any string, fully percent-encoded into a path segment, reaches the handler as
    /// itself, in that route (an encoded `/` or `..` never moves the request elsewhere).
    #[test]
    fn encoded_path_parameters_round_trip(value in any::<String>().prop_filter("non-empty", |v| !v.is_empty())) {
        for route in ROUTES.iter().filter(|r| r.path.contains('{')) {
            let path: String = route
                .path
                .split('/')
                .map(|part| if part.starts_with('{') { percent_encode_all(&value) } else { part.to_string() })
                .collect::<Vec<_>>()
                .join("/");
            match find(&route.method, &path) {
                Match::Found(found, params) => {
                    prop_assert_eq!(found.path, route.path);
                    prop_assert!(params.iter().all(|(_, v)| *v == value));
                }
                _ => prop_assert!(false, "{} did not match {}", path, route.path),
            }
        }
    }

    /// A state-changing admin request passes the cross-site check only when the browser
    /// says it is same-origin (or sends nothing): never with another or a `null` origin.
    #[test]
    fn the_cross_site_check_lets_only_this_site_through(
        origin in proptest::option::of(header_value()),
        fetch_site in proptest::option::of(header_value()),
    ) {
        let mut headers = Vec::new();
        if let Some(o) = origin.clone() { headers.push(("origin", o)); }
        if let Some(s) = fetch_site.clone() { headers.push(("sec-fetch-site", s)); }
        let req = request(Method::POST, headers, Vec::new());
        let passed = check_route_origin(Access::Admin, &req).is_ok();
        let origin_ok = origin.as_ref().is_none_or(|o| o.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{SITE}"))));
        let site_ok = fetch_site.as_ref().is_none_or(|s| s == "same-origin" || s == "none");
        prop_assert_eq!(passed, origin_ok && site_ok);
        // API-key and VM routes carry no ambient credential: the check does not apply.
        prop_assert!(check_route_origin(Access::ApiKey, &req).is_ok());
        prop_assert!(check_route_origin(Access::Vm(crate::http::VmHostname::InPath), &req).is_ok());
    }

    #[test]
    fn bearer_tokens_are_trimmed_and_never_empty(value in header_value()) {
        let req = request(Method::GET, vec![("authorization", value)], Vec::new());
        if let Some(token) = bearer_token(&req) {
            prop_assert!(!token.is_empty());
            prop_assert_eq!(token, token.trim());
        }
    }

    #[test]
    fn the_seat_cookie_is_found_among_others(
        other in header_value(),
        seat in "[0-9a-f]{0,70}",
    ) {
        let cookies = HeaderValue::from_str(&format!("{}={seat}; theme=dark", SEAT_COOKIE)).unwrap();
        let req = request(Method::GET, vec![("cookie", other.clone()), ("cookie", cookies)], Vec::new());
        // Another cookie header, whatever it holds, is parsed without panicking; ours is
        // found unless the other one also names a seat cookie (the first one wins).
        let found = cookie(&req, SEAT_COOKIE);
        if !other.as_bytes().windows(SEAT_COOKIE.len()).any(|w| w == SEAT_COOKIE.as_bytes()) {
            prop_assert_eq!(found, Some(seat.as_str()));
        }
    }

    #[test]
    fn bodies_parse_totally(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            "[\\[\\]{}\",:0-9a-z ]{0,200}".prop_map(String::into_bytes),
            (1usize..2000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
            Just(b"{\"gpu_count\": 1e400}".to_vec()),
            Just(b"{\"gpu_count\": 18446744073709551616}".to_vec()),
            Just(b"\"\\ud800\"".to_vec()),
        ],
        content_type in proptest::option::of(prop_oneof![
            Just(HeaderValue::from_static("application/json")),
            Just(HeaderValue::from_static("Application/JSON; charset=utf-8")),
            Just(HeaderValue::from_static("text/plain")),
            Just(HeaderValue::from_static("application/x-www-form-urlencoded")),
            header_value(),
        ]),
    ) {
        let headers = content_type.into_iter().map(|v| ("content-type", v)).collect();
        let req = request(Method::POST, headers, body);
        let json = json_body::<serde_json::Value>(&req);
        if json.is_ok() {
            prop_assert!(declares_json(&req));
        }
        let _ = form_body(&req);
    }
}

#[test]
fn bodies_over_the_limit_are_refused_before_parsing() {
    let req = request(
        Method::POST,
        vec![("content-type", HeaderValue::from_static("application/json"))],
        vec![b' '; MAX_BODY_BYTES + 1],
    );
    assert!(matches!(
        json_body::<serde_json::Value>(&req),
        Err(ApiError::PayloadTooLarge)
    ));
    assert!(matches!(form_body(&req), Err(ApiError::PayloadTooLarge)));
}
