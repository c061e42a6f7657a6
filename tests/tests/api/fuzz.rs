//! The probe, kept: a fuzzer over the route table and an authorisation matrix generated
//! from it, both against the real local server over raw HTTP on 127.0.0.1.
//!
//! - Fuzz: every route, every method, malformed and oversized bodies, wrong content types,
//!   deeply nested JSON, numbers out of range, odd Unicode, encoded path tricks and bad
//!   query parameters. No request may crash a handler or get a 5xx, other than the
//!   documented 503 `unavailable` (an operation local mode does not have, such as the
//!   OpenStack network calls).
//! - Matrix: every route × every credential that is not the right one (none, wrong Basic,
//!   another VM's token, another user's API key, a forged seat token): refused, nothing
//!   leaked, and the store is exactly as before.
//!
//! `GPUFLEET_FUZZ_CASES` (cases per route, default 200; an eighth of that for each other
//! method) and `GPUFLEET_FUZZ_SEED` make a longer or a different run, e.g.
//! `GPUFLEET_FUZZ_CASES=5000 GPUFLEET_FUZZ_SEED=7 cargo test -p gpufleet-tests --test api
//! fuzz` (about 600,000 requests; the AWS emulator is not needed).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use functions::routes::{Access, Route, ROUTES};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shared::domain::instances::{CloudInstance, InstanceStatus};
use shared::domain::requests::{GpuRequest, NewRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// The system under test, with one of everything a request can name: two running VMs
/// (`victim` holds a participant's seat), two users with a key each, and a provisioning
/// request and an instance of Alice's.
struct World {
    app: TestApp,
    victim: String,
    victim_token: String,
    other_token: String,
    seat_token: String,
    pin: String,
    alice_key: String,
    alice_key_id: String,
    bob_key: String,
    alice_request: String,
    alice_instance: String,
}

fn fuzz_config(config: &mut shared::config::Config) {
    // The fuzzer sends thousands of requests from one address and one key: the rate limits
    // have their own tests, and would otherwise answer most of them with 429.
    config.rate_limit_per_ip = 1_000_000;
    config.rate_limit_per_key = 1_000_000;
    config.claims_per_ip_per_hour = 0;
}

async fn world() -> World {
    let app = spawn_app_with(Options {
        long_poll_secs: 1,
        max_launch: 2,
        config: Some(fuzz_config),
        ..Options::default()
    })
    .await;
    let (victim, victim_token) = app.register_vm("victim").await;
    let (page, seat_token) = app.claim_seat("ada@example.org", CRD).await;
    assert_eq!(assigned_hostname(&page).as_deref(), Some("victim"));
    let pin = assigned_pin(&page).unwrap();
    let seat_token = seat_token.unwrap();
    let (_, other_token) = app.register_vm("other").await;
    let alice_key = app.api_key("alice", 4).await;
    let bob_key = app.api_key("bob", 4).await;
    let keys = app.state.store.list_api_keys().await.unwrap();
    let alice_key_id = keys
        .iter()
        .find(|k| k.user_id == "alice")
        .unwrap()
        .key_id
        .clone();
    // Alice's request and instance go straight into the store: nothing provisions them, so
    // the records stay still while the matrix runs (a refused call is the only thing that
    // could change them).
    let now = app.state.clock.now_millis();
    let request = GpuRequest::new(
        uuid::Uuid::new_v4().to_string(),
        &NewRequest {
            user_id: "alice".into(),
            gpu_count: 1,
            duration_hours: 1,
        },
        now,
    );
    app.state
        .store
        .create_request(&request, 4, None, None)
        .await
        .unwrap();
    let instance = CloudInstance {
        provider: "local".into(),
        provider_id: Some("local-fuzz".into()),
        status: InstanceStatus::Running,
        ..shared::contract::cloud_instance(&CloudInstance::new_id("local"), "alice", now)
    };
    app.state
        .store
        .create_instance(&instance, 4, None, None)
        .await
        .unwrap();
    World {
        app,
        victim,
        victim_token,
        other_token,
        seat_token,
        pin,
        alice_key,
        alice_key_id,
        bob_key,
        alice_request: request.request_id,
        alice_instance: instance.id,
    }
}

impl World {
    /// The route's path with each parameter naming the victim's resource.
    fn target(&self, route: &Route, seat: &str) -> String {
        route
            .path
            .split('/')
            .map(|part| self.param(part, seat))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The value of path segment `part`: itself, or for a `{parameter}` the victim's.
    fn param(&self, part: &str, seat: &str) -> String {
        match part {
            "{hostname}" => self.victim.clone(),
            "{id}" => self.alice_instance.clone(),
            "{request_id}" => self.alice_request.clone(),
            "{key_id}" => self.alice_key_id.clone(),
            "{token}" => seat.to_string(),
            "{gpu_type}" => "RTX4090".to_string(),
            "{aggregate_type}" => "default".to_string(),
            other if other.starts_with('{') => panic!("name a value for {other}"),
            other => other.to_string(),
        }
    }

    /// Everything a refused caller must not see.
    fn secrets(&self) -> [&str; 5] {
        [
            &self.pin,
            &self.seat_token,
            &self.alice_request,
            &self.alice_instance,
            &self.victim_token,
        ]
    }
}

/// Every record a request could change (rate-limit and failed-login counters aside, which
/// refused requests are meant to count).
async fn snapshot(app: &TestApp) -> String {
    let store = &app.state.store;
    let mut vms = store.list_vms().await.unwrap();
    vms.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    let mut logs = Vec::new();
    for vm in &vms {
        logs.push(store.read_logs(&vm.hostname, 0).await.unwrap());
    }
    let mut pools: Vec<_> = store.host_pools().await.unwrap().into_iter().collect();
    pools.sort();
    format!(
        "{vms:?}\n{logs:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{pools:?}",
        store.list_requests(None, 1000).await.unwrap(),
        store.list_api_keys().await.unwrap(),
        store.list_instances(None).await.unwrap(),
        store.list_commands(1000, None, None).await.unwrap(),
        store.last_clear().await.unwrap(),
    )
}

/// A body with every field any route reads, each set to what would act on the victim.
fn acting_json(w: &World) -> Value {
    json!({
        "hostname": w.victim, "status": "error", "gpu_status": "unhealthy",
        "messages": ["forged"], "log_group": "g", "log_stream": w.victim,
        "cloud_init_start": 1, "cloud_init_end": 2,
        "user_id": "alice", "gpu_count": 1, "duration_hours": 1,
        "provider": "local", "offer_id": "local-1x", "image": "ubuntu:22.04",
        "label": "x", "gpu_quota": 8, "to": "other", "target": "other",
        "source_aggregate": "a", "target_aggregate": "b", "hosts": [w.victim],
        "count": 1, "instance_count": 1, "server_id": "s", "network_id": "n",
        "firewall_id": 1, "vm_ids": [1], "confirm": "yes",
    })
}

fn acting_form(w: &World) -> Vec<(&'static str, String)> {
    vec![
        ("num_vms", "1".into()),
        ("instance_count", "1".into()),
        ("confirm", "yes".into()),
        ("confirm_in_use", "yes".into()),
        ("hostname", w.victim.clone()),
        ("to", "other".into()),
        ("email", "eve@example.org".into()),
        ("crd_command", CRD.into()),
        ("command", "restart".into()),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Credential {
    Nothing,
    WrongBasic,
    OtherVmToken,
    OtherUsersKey,
    ForgedSeat,
}

/// Whether `credential` is a legitimate one for `route` acting on its own behalf (Bob's
/// key may list, search and create for Bob): then the answer may be a success, but still
/// must not show or change Alice's or the victim's things.
fn acts_for_itself(route: &Route, credential: Credential) -> bool {
    credential == Credential::OtherUsersKey
        && matches!(route.access, Access::ApiKey | Access::ApiKeyOrAdmin)
}

#[tokio::test]
async fn no_refused_credential_changes_or_shows_anything() {
    let w = world().await;
    let before = snapshot(&w.app).await;
    let forged_seat = "0".repeat(64);
    let mut checked = 0;
    for (n, route) in ROUTES.iter().enumerate() {
        if route.access == Access::Public {
            continue;
        }
        // Wrong passwords from an address per route: the failed-login throttle has its own test.
        let client = client_from(10 + u8::try_from(n).unwrap());
        for credential in [
            Credential::Nothing,
            Credential::WrongBasic,
            Credential::OtherVmToken,
            Credential::OtherUsersKey,
            Credential::ForgedSeat,
        ] {
            // Bob creating his own instance is what that route is for (a request in Alice's
            // name, which the body asks for, must still be refused).
            if acts_for_itself(route, credential)
                && route.access == Access::ApiKey
                && route.function != "create-request"
            {
                continue;
            }
            let url = w.app.url(&w.target(route, &forged_seat));
            for as_json in [true, false] {
                let mut req = client.request(route.method.clone(), &url);
                req = if as_json {
                    req.json(&acting_json(&w))
                } else {
                    req.form(&acting_form(&w))
                };
                req = match credential {
                    Credential::Nothing => req,
                    Credential::WrongBasic => req.basic_auth(ADMIN_USER, Some("not-the-password")),
                    Credential::OtherVmToken => req.bearer_auth(&w.other_token),
                    Credential::OtherUsersKey => req.bearer_auth(&w.bob_key),
                    Credential::ForgedSeat => {
                        req.header("cookie", format!("gpufleet_seat={forged_seat}"))
                    }
                };
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap();
                let what = format!(
                    "{} {} as {credential:?} ({}): {status} {body}",
                    route.method,
                    route.path,
                    if as_json { "json" } else { "form" }
                );
                let may_succeed = acts_for_itself(route, credential)
                    && route.function != "create-request"
                    || (route.access == Access::Seat && route.method == http::Method::GET);
                if may_succeed {
                    // Operations local mode does not have answer a documented 503.
                    let documented_503 = status == 503 && body.contains("\"unavailable\"");
                    assert!(status < 500 || documented_503, "{what}");
                } else {
                    assert!((400..500).contains(&status), "refused: {what}");
                }
                // (An id the caller sent may come back in a "not found".)
                for secret in w.secrets().into_iter().filter(|s| !url.contains(s)) {
                    assert!(!body.contains(secret), "leaks {secret:?}: {what}");
                }
                checked += 1;
            }
        }
    }
    eprintln!("matrix: {checked} refused requests");
    assert!(checked > 500, "{checked} requests");
    assert_eq!(
        snapshot(&w.app).await,
        before,
        "a refused credential changed the store"
    );

    // The snapshot does see changes: the right credentials act.
    w.app
        .report(
            &w.victim_token,
            "/api/gpu_health",
            json!({"hostname": w.victim, "gpu_status": "unhealthy"}),
        )
        .await;
    let resp = w
        .app
        .client
        .post(
            w.app
                .url(&format!("/api/v1/requests/{}/release", w.alice_request)),
        )
        .bearer_auth(&w.alice_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(snapshot(&w.app).await, before);
}

// ---------------------------------------------------------------------------------------
// The fuzzer

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// Path segments that have broken routers: traversal (plain, encoded, double-encoded,
/// overlong UTF-8), NUL, invalid UTF-8, multi-byte characters, a very long segment.
const PATH_TRICKS: [&str; 16] = [
    "..",
    "%2e%2e",
    "..%2F..%2Fetc%2Fpasswd",
    "%252e%252e%252f",
    "%C0%AE%C0%AE",
    "%00",
    "%FF%FE",
    "%C3%A9t%C3%A9",
    "%F0%9F%9A%80",
    "%E2%80%AE",
    "%",
    "%zz",
    "a%2Fb",
    "victim%3Bid",
    "victim%0D%0AX-Injected:%201",
    "0000000000000000000000000000000000000000000000000000000000000000",
];

/// Query values that break parsers.
const ODD_VALUES: [&str; 24] = [
    "",
    "-1",
    "0",
    "1",
    "18446744073709551616",
    "99999999999999999999999",
    "1e400",
    "NaN",
    "inf",
    "-0",
    "1.5",
    "true",
    "null",
    "%FF",
    "%00",
    "%C3%A9",
    "1234567890123456789%C3%A9aaaaaaaaaaaaaaaa",
    "00000000000000000000-0000000000000000",
    "99999999999999999999-ffffffffffffffff",
    "%E2%80%AE%E2%80%8B",
    "a%26b%3Dc",
    "rtx%204090",
    "price_per_gpu",
    "aws_ec2",
];

const QUERY_NAMES: [&str; 14] = [
    "cursor",
    "limit",
    "after",
    "include_cleared",
    "provider",
    "gpu_model",
    "min_gpu_count",
    "max_price",
    "sort",
    "available",
    "region",
    "format",
    "user_id",
    "status",
];

/// JSON values at and beyond every edge a field can have.
fn odd_json(rng: &mut StdRng) -> Value {
    match rng.random_range(0..16) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(0),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1.5),
        6 => json!(f64::MAX),
        7 => json!(""),
        8 => json!("é".repeat(rng.random_range(1..3000))),
        9 => json!("\u{202e}\u{200b}\u{0}\u{1f680}"),
        10 => json!([]),
        11 => json!({"a": {"b": [1, "x", null]}}),
        12 => json!(true),
        13 => json!("x".repeat(rng.random_range(200..70_000))),
        14 => json!(rng.random::<i64>()),
        _ => json!(format!("{:x}", rng.random::<u128>())),
    }
}

fn fuzz_body(rng: &mut StdRng, w: &World) -> Vec<u8> {
    match rng.random_range(0..14) {
        0 => Vec::new(),
        1 => (0..rng.random_range(1..400)).map(|_| rng.random()).collect(),
        2 => b"{\"hostname\": \"\xff\xfe\", \"status\": \"running\"}".to_vec(),
        3 => {
            let depth = rng.random_range(100..40_000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        4 => format!(
            "{{\"a\":{}1{}}}",
            "{\"a\":".repeat(3000),
            "}".repeat(3000)
        )
        .into_bytes(),
        5 => b"{\"gpu_count\": 1e400, \"duration_hours\": 18446744073709551616, \"user_id\": \"\\ud800\"}".to_vec(),
        6 => b"{\"gpu_count\": 1,}".to_vec(),
        7 => vec![b' '; rng.random_range(60_000..80_000)],
        8 => json!([1, "two", null]).to_string().into_bytes(),
        9 => json!("a string").to_string().into_bytes(),
        10 | 11 => {
            // The acting body with some fields replaced by odd values, some removed.
            let mut body = acting_json(w);
            let fields: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
            for field in fields {
                match rng.random_range(0..4) {
                    0 => {
                        body.as_object_mut().unwrap().remove(&field);
                    }
                    1 => body[&field] = odd_json(rng),
                    _ => {}
                }
            }
            body.to_string().into_bytes()
        }
        _ => {
            // A form with odd values, raw (not re-encoded) so `%FF` and `%00` arrive as such.
            let mut form = String::new();
            for (name, value) in acting_form(w) {
                let value = if rng.random_bool(0.5) {
                    ODD_VALUES.choose(rng).unwrap().to_string()
                } else {
                    value.replace(' ', "+").replace('"', "%22")
                };
                form.push_str(&format!("{name}={value}&"));
            }
            form.into_bytes()
        }
    }
}

/// The path for one case: the route's own, with parameters named, tricked or missing, and
/// sometimes a trailing slash or a doubled one.
fn fuzz_target(rng: &mut StdRng, route: &Route, w: &World) -> String {
    let mut path = String::new();
    for part in route.path.split('/').skip(1) {
        path.push('/');
        if part.starts_with('{') {
            match rng.random_range(0..4) {
                0 => path.push_str(PATH_TRICKS.choose(rng).unwrap()),
                1 => path.push_str(&"a".repeat(rng.random_range(300..6000))),
                _ => path.push_str(&w.param(part, &w.seat_token)),
            }
        } else {
            path.push_str(part);
        }
    }
    match rng.random_range(0..12) {
        0 => path.push('/'),
        1 => path = path.replacen('/', "//", 1),
        _ => {}
    }
    if rng.random_bool(0.5) {
        path.push('?');
        for _ in 0..rng.random_range(1..4) {
            path.push_str(&format!(
                "{}={}&",
                QUERY_NAMES.choose(rng).unwrap(),
                ODD_VALUES.choose(rng).unwrap()
            ));
        }
    }
    path
}

const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("text/plain"),
    Some("multipart/form-data; boundary=x"),
    Some("application/json\u{0}"),
];

struct Case {
    /// The last byte of the client's address (127.0.0.x).
    from: u8,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn fuzz_case(rng: &mut StdRng, route: &Route, method: &'static str, w: &World) -> Case {
    let mut headers = Vec::new();
    let mut from = 1;
    if let Some(ct) = CONTENT_TYPES.choose(rng).unwrap() {
        headers.push(("content-type".to_string(), ct.replace('\0', "")));
    }
    // Mostly the right credential, so the request reaches the handler's parsing.
    let credential = match (rng.random_range(0..5), route.access) {
        (0, _) => None,
        (1, _) => {
            // From an address of its own: the failed-login throttle would otherwise refuse
            // the right password too, and most cases would stop at it.
            from = 2;
            Some(format!(
                "Basic {}",
                base64_of(&format!("{ADMIN_USER}:wrong-password"))
            ))
        }
        (_, Access::Admin | Access::ApiKeyOrAdmin | Access::VmOrAdmin(_))
            if rng.random_bool(0.7) =>
        {
            Some(format!(
                "Basic {}",
                base64_of(&format!("{ADMIN_USER}:{ADMIN_PASSWORD}"))
            ))
        }
        (_, Access::ApiKey | Access::ApiKeyOrAdmin) => Some(format!("Bearer {}", w.alice_key)),
        (_, Access::Vm(_) | Access::VmOrAdmin(_)) => Some(format!("Bearer {}", w.victim_token)),
        _ => None,
    };
    if let Some(c) = credential {
        headers.push(("authorization".to_string(), c));
    }
    if rng.random_bool(0.5) {
        headers.push((
            "cookie".to_string(),
            format!("gpufleet_seat={}", w.seat_token),
        ));
    }
    if rng.random_bool(0.2) {
        headers.push(("accept".to_string(), "application/json".to_string()));
    }
    if rng.random_bool(0.1) {
        headers.push((
            "idempotency-key".to_string(),
            "é".repeat(rng.random_range(1..300)),
        ));
    }
    let body = if method == "GET" && rng.random_bool(0.7) {
        Vec::new()
    } else {
        fuzz_body(rng, w)
    };
    Case {
        from,
        method,
        target: fuzz_target(rng, route, w),
        headers,
        body,
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One HTTP/1.1 exchange over a fresh connection, written byte for byte (no client
/// library normalises the path or the headers). Returns the status and the raw response.
async fn raw_exchange(addr: SocketAddr, case: &Case) -> Result<(u16, String), String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(IpAddr::from([127, 0, 0, case.from]), 0))
        .map_err(|e| e.to_string())?;
    let mut stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let mut request = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        case.method,
        case.target,
        case.body.len()
    )
    .into_bytes();
    for (name, value) in &case.headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&case.body);
    let exchange = async {
        // The server may answer (413, 401) before reading the whole body and close.
        let _ = stream.write_all(&request).await;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| "no answer within 20 s".to_string())??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "no HTTP answer: {:?}",
                text.chars().take(200).collect::<String>()
            )
        })?;
    Ok((status, text))
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn the_route_table_survives_the_fuzzer() {
    let w = world().await;
    let cases_per_route = env_number("GPUFLEET_FUZZ_CASES", 200);
    let seed = env_number("GPUFLEET_FUZZ_SEED", 0x6770_7566_6c65_6574);
    let addr: SocketAddr = w.app.url.trim_start_matches("http://").parse().unwrap();
    let mut cases = Vec::new();
    for (r, route) in ROUTES.iter().enumerate() {
        for (m, method) in METHODS.iter().enumerate() {
            // The route's own method gets the most cases; the others must all be 405 or 404.
            let count = if route.method.as_str() == *method {
                cases_per_route
            } else {
                cases_per_route.div_ceil(8)
            };
            for i in 0..count {
                let case_seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
                    ^ ((r as u64) << 40 | (m as u64) << 32 | i);
                let mut rng = StdRng::seed_from_u64(case_seed);
                cases.push((route, fuzz_case(&mut rng, route, method, &w)));
            }
        }
    }
    let total = cases.len();
    let started = std::time::Instant::now();
    let outcomes: Vec<Result<u16, String>> = futures::stream::iter(cases)
        .map(|(route, case)| async move {
            let describe = |answer: &str| {
                format!(
                    "{} {} ({}) headers {:?} body {:?}: {answer}",
                    case.method,
                    case.target.chars().take(200).collect::<String>(),
                    route.path,
                    case.headers,
                    String::from_utf8_lossy(&case.body)
                        .chars()
                        .take(200)
                        .collect::<String>(),
                )
            };
            match raw_exchange(addr, &case).await {
                Ok((status, text)) => {
                    let documented_503 = status == 503 && text.contains("\"unavailable\"");
                    if status >= 500 && !documented_503 {
                        Err(describe(&text.chars().take(600).collect::<String>()))
                    } else {
                        Ok(status)
                    }
                }
                Err(e) => Err(describe(&e)),
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for status in outcomes.iter().flatten() {
        *statuses.entry(*status).or_default() += 1;
    }
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!(
        "fuzz: {total} requests over {} routes in {:.1} s (seed {seed:#x}); statuses {statuses:?}",
        ROUTES.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed (seed {seed:#x}):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The cases reached the handlers, not only the router: successes next to every kind of
    // refusal.
    for expected in [200, 400, 401, 404, 405, 413, 415] {
        assert!(
            statuses.contains_key(&expected),
            "no {expected} among {statuses:?}"
        );
    }
    // The server is still whole: it answers, and its store still reads.
    assert_eq!(
        w.app
            .client
            .get(w.app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
