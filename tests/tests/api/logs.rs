//! VM logs over HTTP: concurrent pushes keep every line, the cap trims whole lines, ANSI
//! escapes are stripped, 503 before the first line, 404 for unknown VMs.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_vms_pushing_at_once_lose_nothing() {
    let app = spawn_app().await;
    let mut vms = Vec::new();
    for i in 0..20 {
        vms.push(app.register_vm(&format!("logs-{i:02}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (hostname, token) in vms.clone() {
        let client = app.client.clone();
        let url = app.url(&format!("/api/vm-logs/{hostname}"));
        tasks.spawn(async move {
            for batch in 0..10 {
                let messages: Vec<String> = (0..30)
                    .map(|i| format!("{hostname} b{batch} l{i}"))
                    .collect();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"messages": messages}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    for (hostname, _) in vms {
        let (status, body) = app
            .admin_get(&format!("/api/vm-logs/{hostname}"), true)
            .await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        let lines: Vec<&str> = body["logs"].as_str().unwrap().lines().collect();
        let expected: Vec<String> = (0..10)
            .flat_map(|b| (0..30).map(move |i| (b, i)))
            .map(|(b, i)| format!("{hostname} b{b} l{i}"))
            .collect();
        assert_eq!(lines, expected, "{hostname}: every line, in order");
    }
}

#[tokio::test]
async fn the_cap_trims_whole_lines_and_ansi_is_stripped() {
    let cap = 64 * 1024;
    let app = spawn_app_with(Options {
        log_cap_bytes: cap,
        ..Options::default()
    })
    .await;
    let (hostname, token) = app.register_vm("capped").await;
    let (status, _) = app.admin_get("/api/vm-logs/capped", true).await;
    assert_eq!(status, 503, "no logs yet");

    // 200 KB of numbered, coloured lines of different lengths, in the CloudWatch shape.
    let mut sent = Vec::new();
    for batch in 0..40 {
        let messages: Vec<String> = (0..50)
            .map(|i| {
                let n = batch * 50 + i;
                let line = format!("{n:06} {}", "y".repeat(n % 150));
                sent.push(line.clone());
                format!("\u{1b}[1;3{}m{line}\u{1b}[0m", n % 8)
            })
            .collect();
        let resp = app
            .client
            .post(app.url("/api/vm-logs"))
            .bearer_auth(&token)
            .json(&json!({"log_group": "/gpufleet/vms", "log_stream": hostname, "messages": messages}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (_, body) = app.admin_get("/api/vm-logs/capped", true).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    let logs = body["logs"].as_str().unwrap();
    assert!(logs.len() <= cap, "{} > {cap}", logs.len());
    assert!(
        logs.len() > cap - 200,
        "trimmed no more than a line's worth: {}",
        logs.len()
    );
    assert!(!logs.contains('\u{1b}'), "ANSI stripped");
    let kept: Vec<&str> = logs.lines().collect();
    let first: usize = kept[0][..6].parse().expect("the first kept line is whole");
    let expected: Vec<&str> = sent[first..].iter().map(String::as_str).collect();
    assert_eq!(kept, expected, "the newest lines, whole and in order");
}

#[tokio::test]
async fn unknown_vms_and_missing_fields() {
    let app = spawn_app().await;
    let (status, _) = app.admin_get("/api/vm-logs/ghost", true).await;
    assert_eq!(status, 404);
    let resp = app
        .admin(app.client.post(app.url("/api/vm-logs")))
        .json(&json!({"log_group": "g", "log_stream": "ghost", "messages": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    for body in [
        json!({"log_stream": "x", "messages": []}),
        json!({"log_group": "g", "messages": []}),
        json!({"log_group": "g", "log_stream": "x"}),
        json!({"log_group": "g", "log_stream": "x", "messages": "not a list"}),
    ] {
        let resp = app
            .admin(app.client.post(app.url("/api/vm-logs")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
    }
}
