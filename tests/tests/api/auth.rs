//! Every admin route refuses missing or wrong Basic credentials; every VM route refuses
//! another VM's token. Driven by the route table, so a new route is covered automatically.

use functions::routes::{Access, ROUTES};
use serde_json::json;

use crate::helpers::*;

fn concrete(path: &str) -> String {
    path.replace("{hostname}", "victim")
        .replace("{id}", "00000000-0000-0000-0000-000000000000")
        .replace("{request_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{key_id}", "0123456789ab")
}

#[tokio::test]
async fn admin_routes_need_valid_basic_credentials() {
    let app = spawn_app().await;
    app.register_vm("victim").await;
    let admin_routes: Vec<_> = ROUTES
        .iter()
        .filter(|r| r.access == Access::Admin)
        .collect();
    assert!(admin_routes.len() >= 8);
    for (n, route) in admin_routes.into_iter().enumerate() {
        let url = app.url(&concrete(route.path));
        // Each route's wrong guesses from an address of their own: the failed-login
        // throttle (its own test below) stays out of this one.
        let client = client_from(10 + n as u8);
        let attempts = [
            None,
            Some((ADMIN_USER, "wrong-password")),
            Some(("root", ADMIN_PASSWORD)),
            Some((ADMIN_USER, "")),
        ];
        for credentials in attempts {
            let mut req = client
                .request(route.method.clone(), &url)
                .form(&[("num_vms", "1"), ("instance_count", "1")]);
            if let Some((user, password)) = credentials {
                req = req.basic_auth(user, Some(password));
            }
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status(),
                401,
                "{} {} with {credentials:?}",
                route.method,
                route.path
            );
            let challenge = resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(challenge.starts_with("Basic"), "{challenge}");
            let body = resp.text().await.unwrap();
            assert!(!body.contains("victim"), "no data leaks in a 401: {body}");
        }
    }
    // Nothing was launched or destroyed by all that.
    let vms = app.state.store.list_vms().await.unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].hostname, "victim");
}

#[tokio::test]
async fn vm_routes_refuse_another_vms_token() {
    let app = spawn_app_with(Options {
        long_poll_secs: 1,
        ..Options::default()
    })
    .await;
    let (_, _victim_token) = app.register_vm("victim").await;
    let (_, other_token) = app.register_vm("other").await;
    let before = app.state.store.get_vm("victim").await.unwrap().unwrap();
    let vm_routes: Vec<_> = ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Vm(_) | Access::VmOrAdmin(_)))
        .collect();
    assert_eq!(vm_routes.len(), 9);
    for route in vm_routes {
        // A body that would succeed with the victim's own token.
        let body = match route.function {
            "vm-startup" => json!({"hostname": "victim"}),
            "update-inuse-status" => json!({"hostname": "victim", "status": true}),
            "gpu-health" => json!({"hostname": "victim", "gpu_status": "unhealthy"}),
            "report-vm-status" => json!({"hostname": "victim", "status": "error"}),
            "vm-metrics" => json!({"cloud_init_start": 1, "cloud_init_end": 2}),
            "ingest-vm-logs" => {
                json!({"log_group": "g", "log_stream": "victim", "messages": ["forged"]})
            }
            "push-vm-logs" => json!({"messages": ["forged"]}),
            "collect-plan" => json!({"hostname": "victim", "files": [
                {"path": "x.slp", "size": 1, "sha256": "0".repeat(64)}]}),
            "collect-done" => json!({"hostname": "victim", "uploaded": [], "refused": []}),
            other => panic!("add a body for VM route {other}"),
        };
        for token in [Some(other_token.as_str()), None, Some("not-a-token")] {
            let mut req = app.client.post(app.url(&concrete(route.path))).json(&body);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{} with {token:?}", route.path);
        }
    }
    let after = app.state.store.get_vm("victim").await.unwrap().unwrap();
    assert_eq!(before, after, "the victim's record is untouched");
    assert_eq!(
        app.state.store.read_logs("victim", 0).await.unwrap(),
        None,
        "no forged log lines"
    );
}

/// No VM route tells an unknown hostname from a wrong token: both are the same 401.
#[tokio::test]
async fn an_unknown_vm_answers_like_a_wrong_token() {
    let app = spawn_app_with(Options {
        long_poll_secs: 1,
        ..Options::default()
    })
    .await;
    let (_, token) = app.register_vm("known").await;
    let routes: Vec<_> = ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Vm(_)))
        .collect();
    assert!(routes.len() >= 6);
    for route in routes {
        let answer = |host: &'static str, token: String| {
            let path = route.path.replace("{hostname}", host);
            let body = match route.function {
                "vm-startup" => json!({"hostname": host}),
                "update-inuse-status" => json!({"hostname": host, "status": true}),
                "gpu-health" => json!({"hostname": host, "gpu_status": "healthy"}),
                "report-vm-status" => json!({"hostname": host, "status": "running"}),
                "vm-metrics" => json!({"agent_start": 1}),
                "push-vm-logs" => json!({"messages": ["x"]}),
                "collect-plan" => json!({"hostname": host, "files": []}),
                "collect-done" => json!({"hostname": host}),
                other => panic!("add a body for VM route {other}"),
            };
            let req = app
                .client
                .post(app.url(&path))
                .bearer_auth(token)
                .json(&body);
            async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let auth = resp.headers().get("www-authenticate").cloned();
                (status, auth, resp.text().await.unwrap())
            }
        };
        let unknown = answer("ghost", token.clone()).await;
        let wrong = answer("known", "0".repeat(64)).await;
        assert_eq!(unknown.0, 401, "{}", route.path);
        assert_eq!(unknown, wrong, "{}", route.path);
    }
}

#[tokio::test]
async fn a_vm_can_update_itself() {
    let app = spawn_app().await;
    let (hostname, token) = app.register_vm("self").await;
    app.report(
        &token,
        "/api/update_inuse_status",
        json!({"hostname": hostname, "status": true}),
    )
    .await;
    assert!(
        app.state
            .store
            .get_vm("self")
            .await
            .unwrap()
            .unwrap()
            .in_use
    );
}

/// Every API-key route refuses no key, a malformed key, an unknown key, a VM's token and
/// wrong admin credentials, and changes nothing.
#[tokio::test]
async fn api_key_routes_need_a_valid_key() {
    let app = spawn_app().await;
    let (_, vm_token) = app.register_vm("victim").await;
    let key_routes: Vec<_> = ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::ApiKey | Access::ApiKeyOrAdmin))
        .collect();
    assert!(key_routes.len() >= 4);
    let unknown = format!("gpf_{}", "0".repeat(64));
    for (n, route) in key_routes.into_iter().enumerate() {
        let url = app.url(&concrete(route.path));
        for bearer in [
            None,
            Some("gpf_short"),
            Some(unknown.as_str()),
            Some(vm_token.as_str()),
        ] {
            let mut req = app
                .client
                .request(route.method.clone(), &url)
                .json(&json!({"user_id": "victim", "gpu_count": 1, "duration_hours": 1}));
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status(),
                401,
                "{} {} with {bearer:?}",
                route.method,
                route.path
            );
        }
        let resp = client_from(100 + n as u8)
            .request(route.method.clone(), &url)
            .basic_auth(ADMIN_USER, Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{} {}", route.method, route.path);
    }
    assert!(app
        .state
        .store
        .list_requests(None, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn failed_admin_logins_are_throttled_per_address() {
    let app = spawn_app().await;
    let attacker = client_from(2);
    let guess = |client: &reqwest::Client, password: &str| {
        client
            .get(app.url("/admin"))
            .basic_auth(ADMIN_USER, Some(password))
            .header("accept", "application/json")
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..30 {
        let resp = guess(&attacker, &format!("guess-{i}")).await.unwrap();
        if resp.status() == 429 {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=120).contains(&retry), "Retry-After {retry}");
        }
        statuses.push(resp.status().as_u16());
    }
    let first_429 = statuses.iter().position(|s| *s == 429).expect("throttled");
    assert!(
        (10..20).contains(&first_429),
        "ten failures pass, the 20th is throttled: {statuses:?}"
    );
    assert!(statuses[..first_429].iter().all(|s| *s == 401));
    assert!(
        statuses[first_429..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    // While throttled, even the right password from that address waits...
    let resp = guess(&attacker, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(resp.status(), 429);
    // ...but the admin at another address is not locked out.
    let resp = guess(&client_from(3), ADMIN_PASSWORD).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The v1 API (API key or admin) is throttled the same way for Basic guesses.
    let resp = attacker
        .get(app.url("/api/v1/requests"))
        .basic_auth(ADMIN_USER, Some("another-guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
}
