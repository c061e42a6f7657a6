//! Startup metrics over HTTP: stages arriving separately and in any order give the same
//! per-stage record and total.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn stages_in_any_order_give_the_right_total() {
    let app = spawn_app().await;
    let parts = [
        json!({"cloud_init_start": 1000.0, "cloud_init_end": 1095.5}),
        json!({"container_start": 1030, "container_duration_seconds": 40}),
        json!({"agent_start": 1070}),
        json!({"agent_end": 1080.5}),
    ];
    for (n, order) in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]]
        .iter()
        .enumerate()
    {
        let (hostname, token) = app.register_vm(&format!("metrics-{n}")).await;
        for i in order {
            app.report(
                &token,
                &format!("/api/vm-metrics/{hostname}"),
                parts[*i].clone(),
            )
            .await;
        }
    }
    let (_, body) = app.admin_get("/admin/instances", true).await;
    let fleet: Value = serde_json::from_str(&body).unwrap();
    for vm in fleet["vms"].as_array().unwrap() {
        assert_eq!(vm["startup_total_seconds"], 95.5, "{vm}");
        assert_eq!(vm["startup_stages"]["container"]["end"], 1070.0);
        assert_eq!(vm["startup_stages"]["agent"]["duration_seconds"], 10.5);
    }
    let (status, html) = app.admin_get("/admin/metrics", false).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"median\">95.5 s<"), "{html}");
    assert_eq!(html.matches("class=\"vm-row\"").count(), 3);
}

#[tokio::test]
async fn bad_metric_reports_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (hostname, token) = app.register_vm("metrics-bad").await;
    let path = format!("/api/vm-metrics/{hostname}");
    app.report(&token, &path, json!({"cloud_init_start": 100}))
        .await;
    for body in [
        json!({"cloud_init_end": 50}),
        json!({"cloud_init_start": "soon"}),
        json!({"kernel_start": 1}),
        json!({"agent_duration_seconds": -3}),
        json!({}),
        json!([1]),
    ] {
        let resp = app
            .client
            .post(app.url(&path))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
    }
    let resp = app
        .client
        .post(app.url("/api/vm-metrics/ghost"))
        .bearer_auth(&token)
        .json(&json!({"agent_start": 1}))
        .send()
        .await
        .unwrap();
    // An unknown VM answers like a wrong token.
    assert_eq!(resp.status(), 401);
    let vm = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    assert_eq!(vm.metrics.fields.len(), 1, "{:?}", vm.metrics);
}
