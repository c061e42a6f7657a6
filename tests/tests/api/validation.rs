//! Bad input gets a 4xx with a clear message and changes nothing.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn vm_endpoints_reject_malformed_bodies() {
    let app = spawn_app().await;
    let (hostname, token) = app.register_vm("val-1").await;
    let before = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    let huge = "x".repeat(200 * 1024);
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "/api/vm-status",
            json!({"status": "running"}).to_string(),
            400,
        ),
        (
            "/api/vm-status",
            json!({"hostname": hostname}).to_string(),
            400,
        ),
        (
            "/api/vm-status",
            json!({"hostname": hostname, "status": "available"}).to_string(),
            400,
        ),
        (
            "/api/vm-status",
            json!({"hostname": hostname, "status": 3}).to_string(),
            400,
        ),
        (
            "/api/vm-status",
            json!({"hostname": 42, "status": "running"}).to_string(),
            400,
        ),
        ("/api/vm-status", "not json".into(), 400),
        ("/api/vm-status", "".into(), 400),
        ("/api/vm-status", json!([1, 2]).to_string(), 400),
        (
            "/api/gpu_health",
            json!({"hostname": hostname}).to_string(),
            400,
        ),
        (
            "/api/gpu_health",
            json!({"hostname": hostname, "gpu_status": "great"}).to_string(),
            400,
        ),
        (
            "/api/gpu_health",
            json!({"hostname": hostname, "gpu_status": null}).to_string(),
            400,
        ),
        (
            "/api/update_inuse_status",
            json!({"hostname": hostname}).to_string(),
            400,
        ),
        (
            "/api/update_inuse_status",
            json!({"hostname": hostname, "status": "true"}).to_string(),
            400,
        ),
        (
            "/api/update_inuse_status",
            json!({"hostname": hostname, "status": 1}).to_string(),
            400,
        ),
        ("/vm_startup", json!({}).to_string(), 400),
        ("/vm_startup", json!({"hostname": ""}).to_string(), 400),
        ("/vm_startup", "{".into(), 400),
        // An unknown VM answers exactly like a wrong token.
        ("/vm_startup", json!({"hostname": "nope"}).to_string(), 401),
        (
            "/api/vm-status",
            json!({"hostname": "nope", "status": "running"}).to_string(),
            401,
        ),
        ("/api/vm-status", huge.clone(), 413),
        ("/vm_startup", huge, 413),
    ];
    for (path, body, expected) in cases {
        let resp = app
            .client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(
            status,
            expected,
            "{path} {}: {text}",
            &body[..body.len().min(80)]
        );
        let err: serde_json::Value = serde_json::from_str(&text).expect("JSON error body");
        assert!(
            err["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    let after = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    assert_eq!(before, after, "no bad request changed the VM");
}

#[tokio::test]
async fn claim_form_errors_show_the_form_and_change_nothing() {
    let app = spawn_app().await;
    app.register_vm("val-claim").await;
    let cases = [
        ("", CRD, "email address is required"),
        ("not-an-email", CRD, "valid email"),
        ("a@b.org", "", "CRD command is required"),
        ("a@b.org", "--code=abc;id", "Invalid CRD command"),
        ("a@b.org", "--code='x;id'", "Invalid CRD command"),
        ("a@b.org", "--code=$(id)", "Invalid CRD command"),
        ("a@b.org", "--code=a --code=b", "more than one"),
        ("a@b.org", "start-host --name=x", "no --code"),
        ("<script>alert(1)</script>@x.org", CRD, "valid email"),
    ];
    for (email, crd, message) in cases {
        let html = app.claim(email, crd).await;
        assert!(html.contains(message), "{email:?} {crd:?}: {html}");
        assert!(assigned_hostname(&html).is_none());
        assert!(!html.contains("<script>alert"), "echoed input is escaped");
    }
    // Fields missing altogether.
    let resp = app
        .client
        .post(app.url("/api/request_vm"))
        .form(&[("email", "a@b.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("CRD command is required"));
    assert_eq!(app.free_count().await, 1, "nothing was assigned");
}

#[tokio::test]
async fn launch_rejects_bad_counts() {
    let app = spawn_app_with(Options {
        max_launch: 5,
        ..Options::default()
    })
    .await;
    for (field, value) in [
        ("num_vms", "0"),
        ("num_vms", "-2"),
        ("num_vms", "six"),
        ("num_vms", "2.5"),
        ("instance_count", "6"),
        ("other", "1"),
    ] {
        let resp = app
            .admin(app.client.post(app.url("/api/launch")))
            .header("accept", "application/json")
            .form(&[(field, value)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{field}={value}");
    }
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = app
        .client
        .delete(app.url("/api/unassigned_vms_count"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = app
        .admin(app.client.get(app.url("/api/vm-status/ghost")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
