//! A seat only its owner can reach: the seat cookie and the private seat link, repeat
//! claims without them, new CRD commands, the join code, the per-IP limit, and the admin's
//! re-issue and move.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const CRD_2: &str = "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/0SecondCode-xyz\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)";

/// A client that sends no cookies of its own (each request says what it carries).
fn stranger() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_page(app: &TestApp, path: &str, seat: Option<&str>) -> (u16, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(seat) = seat {
        req = req.header("cookie", format!("gpufleet_seat={seat}"));
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post_form(
    app: &TestApp,
    path: &str,
    seat: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String) {
    let mut req = app.client.post(app.url(path)).form(form);
    if let Some(seat) = seat {
        req = req.header("cookie", format!("gpufleet_seat={seat}"));
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn only_the_seat_holder_sees_the_vm() {
    seat_privacy(spawn_app().await).await;
}

#[tokio::test]
async fn only_the_seat_holder_sees_the_vm_on_dynamodb() {
    seat_privacy(spawn_app_on_dynamodb().await).await;
}

async fn seat_privacy(app: TestApp) {
    app.register_vm("seat-a").await;
    app.register_vm("seat-b").await;
    let (html, seat) = app.claim_seat("victim@example.org", CRD).await;
    let seat = seat.expect("the claim sets the seat cookie");
    let hostname = assigned_hostname(&html).expect("assigned");
    let pin = assigned_pin(&html).expect("pin");
    assert!(
        html.contains(&format!("/seat/{seat}")),
        "the seat link is shown"
    );
    let before = app.state.store.list_vms().await.unwrap();

    // Another client, the same email (any case): nothing about the VM, nothing changes.
    for email in ["victim@example.org", "Victim@Example.org"] {
        let resp = stranger()
            .post(app.url("/api/request_vm"))
            .form(&[("email", email), ("crd_command", CRD)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(seat_cookie(&resp).is_none(), "no seat handed out");
        let body = resp.text().await.unwrap();
        assert!(body.contains("already has a VM"), "{body}");
        for secret in [hostname.as_str(), pin.as_str(), "seat-a", "seat-b"] {
            assert!(!body.contains(secret), "{secret} leaked: {body}");
        }
    }
    // A forged or foreign cookie is no better.
    let (_, body) = post_form(
        &app,
        "/api/request_vm",
        Some(&"0".repeat(64)),
        &[("email", "victim@example.org"), ("crd_command", CRD)],
    )
    .await;
    assert!(!body.contains(&pin) && body.contains("already has a VM"));
    assert_eq!(app.state.store.list_vms().await.unwrap(), before);
    assert_eq!(app.free_count().await, 1);

    // The cookie returns the seat, as a repeat claim and as the seat page; so does the link.
    let (_, body) = post_form(
        &app,
        "/api/request_vm",
        Some(&seat),
        &[("email", "victim@example.org"), ("crd_command", CRD)],
    )
    .await;
    assert_eq!(assigned_hostname(&body).as_deref(), Some(hostname.as_str()));
    assert_eq!(assigned_pin(&body).as_deref(), Some(pin.as_str()));
    for (path, cookie) in [
        ("/seat".to_string(), Some(seat.as_str())),
        (format!("/seat/{seat}"), None),
    ] {
        let (status, body) = get_page(&app, &path, cookie).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(assigned_hostname(&body).as_deref(), Some(hostname.as_str()));
        assert_eq!(assigned_pin(&body).as_deref(), Some(pin.as_str()));
        assert!(body.contains("id=\"alive\""), "{body}");
    }
    // Without a credential, or with a wrong one: the same 404, nothing shown.
    for (path, cookie) in [
        ("/seat".to_string(), None),
        ("/seat".to_string(), Some("zz")),
        (format!("/seat/{}", "f".repeat(64)), None),
        ("/seat/%C3%A9".to_string(), None),
    ] {
        let (status, body) = get_page(&app, &path, cookie).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains(&pin));
    }
}

#[tokio::test]
async fn the_seat_cookie_is_httponly_and_strict() {
    let app = spawn_app().await;
    app.register_vm("cookie-vm").await;
    let resp = app
        .client
        .post(app.url("/api/request_vm"))
        .form(&[("email", "c@example.org"), ("crd_command", CRD)])
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http locally: {cookie}");
    // Behind TLS (API Gateway, or a proxy that says so) it is Secure.
    let resp = app
        .client
        .get(app.url(&format!("/seat/{}", seat_cookie(&resp).unwrap())))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert_eq!(resp.headers()["referrer-policy"], "same-origin");
    assert_eq!(resp.headers()["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_command_reaches_the_right_agent() {
    let app = spawn_app().await;
    let resp = app
        .admin(app.client.post(app.url("/api/launch")))
        .form(&[("num_vms", "2")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    eventually(Duration::from_secs(60), "2 VMs free", || async {
        app.free_count().await == 2
    })
    .await;
    let (html, seat) = app.claim_seat("resend@example.org", CRD).await;
    let seat = seat.unwrap();
    let mine = assigned_hostname(&html).unwrap();
    let other = app
        .state
        .store
        .list_vms()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.hostname != mine)
        .unwrap()
        .hostname;
    let assignment_file = |host: &str| {
        app.data_dir
            .join("agents")
            .join(format!("{host}.assignment.json"))
    };
    let read = |host: &str| std::fs::read_to_string(assignment_file(host)).unwrap_or_default();
    eventually(
        Duration::from_secs(30),
        "the agent got the first command",
        || async { read(&mine).contains("0AbCd-ef_GH") },
    )
    .await;

    // An invalid command is refused and changes nothing.
    let (status, body) = post_form(
        &app,
        &format!("/seat/{seat}/command"),
        None,
        &[("crd_command", "--code=4/x; rm -rf /")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A valid one, through the link (another device) reaches this VM's agent only.
    let (status, body) = post_form(
        &app,
        &format!("/seat/{seat}/command"),
        None,
        &[("crd_command", CRD_2)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("Sent to {mine}")), "{body}");
    eventually(
        Duration::from_secs(30),
        "the agent got the new command",
        || async { read(&mine).contains("0SecondCode-xyz") },
    )
    .await;
    let vm = app.state.store.get_vm(&mine).await.unwrap().unwrap();
    let a = vm.assignment.unwrap();
    assert!(a.crd_command.contains("0SecondCode-xyz"));
    assert!(a.command_at > a.assigned_at);
    assert!(!read(&other).contains("SecondCode"), "not the other VM");
    // Through the cookie too.
    let (status, _) = post_form(&app, "/seat/command", Some(&seat), &[("crd_command", CRD)]).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(30), "the third command", || async {
        read(&mine).contains("0AbCd-ef_GH")
    })
    .await;
    // The agent's shipped log never holds a code or the PIN.
    eventually(
        Duration::from_secs(30),
        "the agent logged the commands",
        || async {
            let (_, body) = app.admin_get(&format!("/api/vm-logs/{mine}"), true).await;
            body.matches("would run").count() >= 3
        },
    )
    .await;
    let (_, logs) = app.admin_get(&format!("/api/vm-logs/{mine}"), true).await;
    assert!(logs.contains("--code=****"), "{logs}");
    for secret in ["0AbCd-ef_GH", "0SecondCode-xyz", a.pin.as_str()] {
        assert!(!logs.contains(secret), "{secret} in the log: {logs}");
    }
    destroy_all(&app).await;
}

/// Destroys every VM (confirming in-use ones) and checks nothing is left.
pub async fn destroy_all(app: &TestApp) {
    let resp = app
        .admin(app.client.post(app.url("/destroy")))
        .header("accept", "application/json")
        .form(&[("confirm", "yes"), ("confirm_in_use", "yes")])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_join_code_keeps_strangers_out() {
    let app = spawn_app_with(Options {
        config: Some(|c| c.join_code = Some("lab-2026".into())),
        ..Options::default()
    })
    .await;
    app.register_vm("join-1").await;
    let home = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("name=\"join_code\""), "the form asks for it");
    for code in [None, Some(""), Some("lab-2025"), Some("LAB-2026")] {
        let mut form = vec![("email", "j@example.org"), ("crd_command", CRD)];
        if let Some(code) = code {
            form.push(("join_code", code));
        }
        let (status, body) = post_form(&app, "/api/request_vm", None, &form).await;
        assert_eq!(status, 200);
        assert!(assigned_hostname(&body).is_none(), "{code:?}: {body}");
        assert!(body.contains("join code"), "{body}");
        assert_eq!(app.free_count().await, 1, "nothing changed");
    }
    let (_, body) = post_form(
        &app,
        "/api/request_vm",
        None,
        &[
            ("email", "j@example.org"),
            ("crd_command", CRD),
            ("join_code", "lab-2026"),
        ],
    )
    .await;
    assert_eq!(assigned_hostname(&body).as_deref(), Some("join-1"));
}

#[tokio::test]
async fn the_per_ip_limit_counts_claims_per_address() {
    let app = spawn_app_with(Options {
        config: Some(|c| c.claims_per_ip_per_hour = 2),
        ..Options::default()
    })
    .await;
    for i in 0..4 {
        app.register_vm(&format!("ip-{i}")).await;
    }
    for i in 0..2 {
        let html = app.claim(&format!("ip{i}@example.org"), CRD).await;
        assert!(assigned_hostname(&html).is_some());
    }
    let html = app.claim("ip2@example.org", CRD).await;
    assert!(assigned_hostname(&html).is_none());
    assert!(html.contains("too many claims from your network"), "{html}");
    assert_eq!(app.free_count().await, 2);
    // Another address is counted apart.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let html = other
        .post(app.url("/api/request_vm"))
        .form(&[("email", "ip3@example.org"), ("crd_command", CRD)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(assigned_hostname(&html).is_some(), "{html}");
}

#[tokio::test]
async fn an_admin_reissues_a_link_and_moves_a_participant() {
    admin_seat_actions(spawn_app().await).await;
}

#[tokio::test]
async fn an_admin_reissues_a_link_and_moves_a_participant_on_dynamodb() {
    admin_seat_actions(spawn_app_on_dynamodb().await).await;
}

async fn admin_seat_actions(app: TestApp) {
    app.register_vm("adm-1").await;
    app.register_vm("adm-2").await;
    app.register_vm("adm-3").await;
    let (html, seat) = app.claim_seat("lost@example.org", CRD).await;
    let seat = seat.unwrap();
    let first = assigned_hostname(&html).unwrap();

    // Without credentials, and cross-site: refused.
    let path = format!("/api/seats/{first}/reissue");
    let resp = app.client.post(app.url(&path)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .admin(app.client.post(app.url(&path)))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .admin(app.client.post(app.url(&path)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["email"], "lost@example.org");
    let link = body["seat_link"].as_str().unwrap().to_string();
    let new_path = link
        .split_once("/seat/")
        .map(|(_, t)| format!("/seat/{t}"))
        .unwrap();
    assert_eq!(
        get_page(&app, &format!("/seat/{seat}"), None).await.0,
        404,
        "old link"
    );
    assert_eq!(
        get_page(&app, "/seat", Some(&seat)).await.0,
        404,
        "old cookie"
    );
    let (status, page) = get_page(&app, &new_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(assigned_hostname(&page).as_deref(), Some(first.as_str()));
    // A free VM has no participant to re-issue for.
    let free = ["adm-1", "adm-2", "adm-3"]
        .into_iter()
        .find(|h| *h != first)
        .unwrap();
    let resp = app
        .admin(
            app.client
                .post(app.url(&format!("/api/seats/{free}/reissue"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Move to a named VM: the seat and email follow, the old VM is out of the pool.
    let resp = app
        .admin(
            app.client
                .post(app.url(&format!("/api/seats/{first}/move"))),
        )
        .form(&[("to", free)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["hostname"], free);
    let (_, page) = get_page(&app, &new_path, None).await;
    assert_eq!(assigned_hostname(&page).as_deref(), Some(free));
    let old = app.state.store.get_vm(&first).await.unwrap().unwrap();
    assert!(old.assignment.as_ref().is_some_and(|a| a.is_retired()));
    assert_eq!(old.status.as_str(), "error");
    assert!(old.status_reason.unwrap().contains("moved by an organiser"));
    assert_eq!(app.free_count().await, 1);
    // Onto a VM that is not free: refused, nothing changes.
    let resp = app
        .admin(app.client.post(app.url(&format!("/api/seats/{free}/move"))))
        .form(&[("to", first.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(app.free_count().await, 1);
}

#[tokio::test]
async fn cross_site_requests_cannot_claim_or_act_on_a_seat() {
    let app = spawn_app().await;
    app.register_vm("xs-1").await;
    app.register_vm("xs-2").await;
    let (_, seat) = app.claim_seat("xs@example.org", CRD).await;
    let seat = seat.unwrap();
    let before = app.state.store.list_vms().await.unwrap();
    let cookie = format!("gpufleet_seat={seat}");
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/api/request_vm".into(),
            vec![("email", "other@example.org"), ("crd_command", CRD)],
        ),
        ("/seat/command".into(), vec![("crd_command", CRD_2)]),
        (
            format!("/seat/{seat}/command"),
            vec![("crd_command", CRD_2)],
        ),
        ("/seat/move".into(), vec![]),
    ];
    for (path, form) in &cases {
        for (name, value) in [
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ] {
            let resp = app
                .client
                .post(app.url(path))
                .header("cookie", &cookie)
                .header(name, value)
                .form(form)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{path} with {name}: {value}");
        }
    }
    assert_eq!(app.state.store.list_vms().await.unwrap(), before);
}

#[tokio::test]
async fn a_seat_link_never_replaces_the_seat_this_browser_holds() {
    let app = spawn_app().await;
    app.register_vm("mine-1").await;
    app.register_vm("mine-2").await;
    let (_, mine) = app.claim_seat("me@example.org", CRD).await;
    let (_, theirs) = app.claim_seat("them@example.org", CRD).await;
    let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
    // This browser holds its own seat and opens someone else's link.
    let resp = app
        .client
        .get(app.url(&format!("/seat/{theirs}")))
        .header("cookie", format!("gpufleet_seat={mine}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        seat_cookie(&resp).is_none(),
        "the browser keeps its own seat"
    );
    // A browser without a seat remembers the one it opened.
    let resp = app
        .client
        .get(app.url(&format!("/seat/{theirs}")))
        .send()
        .await
        .unwrap();
    assert_eq!(seat_cookie(&resp).as_deref(), Some(theirs.as_str()));
}

#[tokio::test]
async fn a_participant_cannot_retire_the_pool_by_moving_again_and_again() {
    let app = spawn_app().await;
    let mut tokens = std::collections::HashMap::new();
    for i in 0..5 {
        let (hostname, token) = app.register_vm(&format!("churn-{i}")).await;
        tokens.insert(hostname, token);
    }
    let (html, seat) = app.claim_seat("churn@example.org", CRD).await;
    let seat = seat.unwrap();
    let mut current = assigned_hostname(&html).unwrap();
    for round in 0..3 {
        // The participant breaks their own VM (they control it) and asks to move.
        app.report(
            &tokens[&current],
            "/api/vm-status",
            serde_json::json!({"hostname": current, "status": "error"}),
        )
        .await;
        let resp = app
            .client
            .post(app.url(&format!("/seat/{seat}/move")))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        if round < 2 {
            assert_eq!(status, 200, "{body}");
            current = assigned_hostname(&body).unwrap();
        } else {
            assert_eq!(status, 409, "{body}");
            assert!(body.contains("ask your organiser"), "{body}");
        }
    }
    assert_eq!(app.free_count().await, 2, "two VMs retired, two still free");
}
