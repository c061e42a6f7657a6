//! GPU provisioning requests over HTTP on the local server: validation, quota under a race,
//! idempotency, listing, ownership, the full lifecycle with real agent processes, failure,
//! expiry, release, CORS and /health.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shared::adapters::OffsetClock;
use shared::config::Config;

use crate::helpers::{eventually, spawn_app_with, Options, TestApp};

impl TestApp {
    /// An API key for `user` with `quota` GPUs, through the admin endpoint.
    pub async fn api_key(&self, user: &str, quota: u32) -> String {
        let resp = self
            .admin(self.client.post(self.url("/api/v1/api-keys")))
            .json(&json!({"user_id": user, "gpu_quota": quota, "label": "tests"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        body["key"].as_str().unwrap().to_string()
    }

    pub async fn post_request(&self, key: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url("/api/v1/requests"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, key: &str, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// An admin GET answering JSON (through the existing `admin_get`).
    pub async fn admin_json(&self, path: &str) -> Value {
        let (status, body) = self.admin_get(path, true).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn request_status(&self, key: &str, id: &str) -> Value {
        self.get_json(key, &format!("/api/v1/requests/{id}"))
            .await
            .1
    }

    pub async fn wait_for_status(&self, key: &str, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = self.request_status(key, id).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("request {id} never became {status}: {last}");
    }
}

/// Machine shapes that keep the local tests small: 2-GPU and 1-GPU "instances".
fn small_shapes(config: &mut Config) {
    config.gpu_shapes = vec![
        shared::domain::requests::GpuShape {
            instance_type: "local.2gpu".into(),
            gpus: 2,
        },
        shared::domain::requests::GpuShape {
            instance_type: "local.1gpu".into(),
            gpus: 1,
        },
    ];
}

async fn app() -> TestApp {
    spawn_app_with(Options {
        config: Some(small_shapes),
        ..Options::default()
    })
    .await
}

fn request(user: &str, gpus: u32, hours: u32) -> Value {
    json!({"user_id": user, "gpu_count": gpus, "duration_hours": hours})
}

#[tokio::test]
async fn validation_answers_400_with_the_reason_and_records_nothing() {
    let app = app().await;
    let key = app.api_key("alice", 8).await;
    let long = "a".repeat(51);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"user_id": "alice", "gpu_count": 0, "duration_hours": 1}),
            "between 1 and 8 (got 0)",
        ),
        (
            json!({"user_id": "alice", "gpu_count": 9, "duration_hours": 1}),
            "between 1 and 8 (got 9)",
        ),
        (
            json!({"user_id": "alice", "gpu_count": "2", "duration_hours": 1}),
            "gpu_count must be an integer",
        ),
        (
            json!({"user_id": "alice", "gpu_count": 1, "duration_hours": 0}),
            "duration_hours must be between",
        ),
        (
            json!({"user_id": "alice", "gpu_count": 1, "duration_hours": 1.5}),
            "whole number",
        ),
        (
            json!({"user_id": "alice", "gpu_count": 1}),
            "duration_hours is required",
        ),
        (
            json!({"user_id": "", "gpu_count": 1, "duration_hours": 1}),
            "user_id must be 1-50",
        ),
        (
            json!({"user_id": long, "gpu_count": 1, "duration_hours": 1}),
            "(got 51)",
        ),
        (
            json!({"user_id": 5, "gpu_count": 1, "duration_hours": 1}),
            "user_id must be a string",
        ),
        (json!("just a string"), "JSON object"),
    ];
    for (body, reason) in cases {
        let (status, answer) = app.post_request(&key, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(reason),
            "{body}: {answer}"
        );
    }
    // Not JSON at all: said so (415), or claimed to be JSON but is not (400).
    let resp = app
        .client
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&key)
        .body("gpu_count=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp = app
        .client
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("gpu_count=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Boundaries that are fine: 1 and 8 GPUs, a 50-character user is checked by key.
    let (status, _) = app.post_request(&key, &request("alice", 1, 1)).await;
    assert_eq!(status, 201);
    let (listed_status, listed) = app.get_json(&key, "/api/v1/requests").await;
    assert_eq!(listed_status, 200);
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the valid request was recorded"
    );

    // The key decides the user; no key, a wrong key or a revoked key is a 401.
    let (status, answer) = app.post_request(&key, &request("bob", 1, 1)).await;
    assert_eq!(status, 403, "{answer}");
    let (status, _) = app.post_request("gpf_nope", &request("alice", 1, 1)).await;
    assert_eq!(status, 401);
    let bob = app.api_key("bob", 8).await;
    let keys = app.admin_json("/api/v1/api-keys").await;
    assert!(
        !keys.to_string().contains(&bob[4..]),
        "listing never shows a key"
    );
    let bob_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["user_id"] == "bob")
        .unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = app
        .admin(
            app.client
                .delete(app.url(&format!("/api/v1/api-keys/{bob_id}"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let (status, _) = app.post_request(&bob, &request("bob", 1, 1)).await;
    assert_eq!(status, 401, "a revoked key stops working");
    // Creating keys is admin-only.
    let resp = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&key)
        .json(&json!({"user_id": "mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn twenty_parallel_requests_of_two_gpus_against_a_quota_of_eight_accept_exactly_four() {
    let app = app().await;
    let key = app.api_key("racer", 8).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url("/api/v1/requests");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&request("racer", 2, 1))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        16,
        "{statuses:?}"
    );
    assert_eq!(app.state.store.gpus_in_use("racer").await.unwrap(), 8);
    let (status, answer) = app.post_request(&key, &request("racer", 1, 1)).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("quota"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let app = app().await;
    let key = app.api_key("idem", 8).await;
    let post = |body: Value, idem: &'static str| {
        app.client
            .post(app.url("/api/v1/requests"))
            .bearer_auth(&key)
            .header("Idempotency-Key", idem)
            .json(&body)
            .send()
    };
    let first = post(request("idem", 2, 1), "k-1").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post(request("idem", 2, 1), "k-1").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["request_id"], first["request_id"]);
    let (_, listed) = app.get_json(&key, "/api/v1/requests").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(app.state.store.gpus_in_use("idem").await.unwrap(), 2);
    // The same key for a different request is refused.
    let other = post(request("idem", 1, 1), "k-1").await.unwrap();
    assert_eq!(other.status(), 409);
}

#[tokio::test]
async fn listings_are_newest_first_limited_and_private() {
    let app = app().await;
    let alice = app.api_key("alice", 8).await;
    let bob = app.api_key("bob", 8).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, answer) = app.post_request(&alice, &request("alice", 1, 1)).await;
        assert_eq!(status, 201);
        assert_eq!(answer["status"], "pending");
        ids.push(answer["request_id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, listed) = app.get_json(&alice, "/api/v1/requests").await;
    let listed_ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed_ids, newest_first);
    let one = &listed.as_array().unwrap()[0];
    for field in [
        "user_id",
        "gpu_count",
        "duration_hours",
        "kubeconfig",
        "created_at",
        "completed_at",
        "expires_at",
        "error_msg",
        "access",
    ] {
        assert!(one.get(field).is_some(), "{field} in {one}");
    }
    assert!(one["created_at"].as_str().unwrap().ends_with('Z'));
    let (_, limited) = app.get_json(&alice, "/api/v1/requests?limit=2").await;
    assert_eq!(limited.as_array().unwrap().len(), 2);
    for bad in ["0", "abc", "-1", "100000"] {
        let (status, _) = app
            .get_json(&alice, &format!("/api/v1/requests?limit={bad}"))
            .await;
        assert_eq!(status, 400, "limit={bad}");
    }
    // Bob sees none of Alice's, and hers are "not found" to him.
    let (_, bobs) = app.get_json(&bob, "/api/v1/requests").await;
    assert_eq!(bobs.as_array().unwrap().len(), 0);
    let (status, _) = app
        .get_json(&bob, &format!("/api/v1/requests/{}", ids[0]))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get_json(
            &alice,
            "/api/v1/requests/00000000-0000-4000-8000-000000000000",
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json(&alice, "/api/v1/requests/not-a-uuid").await;
    assert_eq!(status, 400);
    // An admin lists everyone's.
    let all = app.admin_json("/api/v1/requests").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
}

/// pending → provisioning → completed with access, on real agent processes; then the lease
/// expires: machines terminated, status `expired`, quota back.
#[tokio::test]
async fn a_request_is_provisioned_for_real_and_its_lease_ends() {
    let clock = Arc::new(OffsetClock::default());
    let app = spawn_app_with(Options {
        config: Some(small_shapes),
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let key = app.api_key("carol", 8).await;
    let (status, created) = app.post_request(&key, &request("carol", 5, 2)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["request_id"].as_str().unwrap().to_string();
    let done = app.wait_for_status(&key, &id, "completed").await;
    let hosts = done["access"]["hosts"].as_array().unwrap().clone();
    // 5 GPUs from 2-GPU and 1-GPU machines: 2 + 2 + 1.
    let gpus: Vec<u64> = hosts.iter().map(|h| h["gpus"].as_u64().unwrap()).collect();
    assert_eq!(gpus, [2, 2, 1]);
    for h in &hosts {
        assert!(
            h["instance_id"].as_str().unwrap().starts_with("local-"),
            "{h}"
        );
        assert_eq!(h["address"], "127.0.0.1");
    }
    assert_eq!(done["access"]["ssh_user"], "ubuntu");
    assert!(done["completed_at"].is_string() && done["expires_at"].is_string());
    // Leased machines are never offered to workshop participants.
    assert_eq!(app.free_count().await, 0);
    let running = app.state.compute.list_machines().await.unwrap();
    assert_eq!(running.len(), 3);
    assert_eq!(app.state.store.gpus_in_use("carol").await.unwrap(), 5);

    // Two hours and a bit later the sweep ends the lease.
    clock.advance(Duration::from_secs(2 * 3600 + 60));
    let ended = app.wait_for_status(&key, &id, "expired").await;
    assert_eq!(ended["gpu_count"], 5);
    eventually(Duration::from_secs(10), "agents terminated", || async {
        app.state.compute.list_machines().await.unwrap().is_empty()
    })
    .await;
    for h in &hosts {
        let hostname = h["hostname"].as_str().unwrap();
        assert!(app.state.store.get_vm(hostname).await.unwrap().is_none());
    }
    assert_eq!(app.state.store.gpus_in_use("carol").await.unwrap(), 0);
    let (status, _) = app.post_request(&key, &request("carol", 8, 1)).await;
    assert_eq!(status, 201, "the quota came back");
}

#[tokio::test]
async fn release_ends_the_lease_now_and_only_for_its_owner() {
    let app = app().await;
    let key = app.api_key("dave", 8).await;
    let other = app.api_key("erin", 8).await;
    let (_, created) = app.post_request(&key, &request("dave", 2, 8)).await;
    let id = created["request_id"].as_str().unwrap().to_string();
    app.wait_for_status(&key, &id, "completed").await;
    let path = format!("/api/v1/requests/{id}/release");
    let foreign = app
        .client
        .post(app.url(&path))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
    let released = app
        .client
        .post(app.url(&path))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    let released: Value = released.json().await.unwrap();
    assert_eq!(released["status"], "released");
    assert!(app.state.compute.list_machines().await.unwrap().is_empty());
    assert_eq!(app.state.store.gpus_in_use("dave").await.unwrap(), 0);
    let again = app
        .client
        .post(app.url(&path))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_launch_that_cannot_succeed_fails_the_request_with_the_reason() {
    let app = spawn_app_with(Options {
        config: Some(small_shapes),
        agent_program: Some("/nonexistent/gpufleet-agent".into()),
        ..Options::default()
    })
    .await;
    let key = app.api_key("frank", 8).await;
    let (_, created) = app.post_request(&key, &request("frank", 3, 1)).await;
    let id = created["request_id"].as_str().unwrap().to_string();
    let failed = app.wait_for_status(&key, &id, "failed").await;
    let reason = failed["error_msg"].as_str().unwrap();
    assert!(reason.contains("does not exist"), "{reason}");
    assert_eq!(app.state.store.gpus_in_use("frank").await.unwrap(), 0);
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
}

#[tokio::test]
async fn cors_preflight_allows_the_configured_origins_only() {
    let app = app().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/requests"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = preflight("http://localhost:5173").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(
        ok.headers()["access-control-allow-headers"],
        "authorization, content-type"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // A real cross-origin call from an allowed origin can read the answer.
    let resp = app
        .client
        .get(app.url("/health"))
        .header("Origin", "http://127.0.0.1:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://127.0.0.1:5173"
    );
}

#[tokio::test]
async fn health_checks_the_store() {
    let app = app().await;
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "gpufleet");
    assert_eq!(body["checks"]["store"], "ok");
    assert!(body["version"].is_string());
}

/// The store really down: DynamoDB at an address nothing listens on.
#[tokio::test]
async fn health_is_503_degraded_when_the_store_is_down() {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await;
    let store = shared::adapters::DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "gone");
    let app = spawn_app_with(Options {
        store: Some(Arc::new(store)),
        ..Options::default()
    })
    .await;
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["store"], "unavailable");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internals: {body}"
    );
}
