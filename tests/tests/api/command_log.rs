//! The command log over HTTP: every mutating cloud command (VM launches and terminations,
//! instances created, stopped, destroyed; on EC2 and locally) is logged with the caller who
//! caused it; clearing hides but keeps; only admins read or clear it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

impl TestApp {
    async fn command_log(&self, query: &str) -> Value {
        let resp = self
            .admin(
                self.client
                    .get(self.url(&format!("/api/command-log{query}"))),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "success");
        body["data"].clone()
    }
}

fn entries(data: &Value) -> Vec<Value> {
    data["entries"].as_array().unwrap().clone()
}

fn find<'a>(entries: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["command"].as_str().unwrap().starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn vm_launches_run_as_system_and_a_destroy_as_the_admin_who_asked() {
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
    let resp = app
        .admin(app.client.post(app.url("/admin/destroy")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let log = entries(&app.command_log("").await);
    let launches = find(&log, "start agent process for ");
    assert_eq!(launches.len(), 2, "{log:?}");
    for e in &launches {
        assert_eq!(e["user"], "system", "the provisioner launches");
        assert_eq!(e["status"], "success");
        assert!(e["execution_time"].as_str().unwrap().ends_with('s'));
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let kills = find(&log, "kill agent processes ");
    assert_eq!(kills.len(), 1, "{log:?}");
    assert_eq!(kills[0]["user"], "admin:admin");
    assert_eq!(kills[0]["detail"], "2 of 2 confirmed ending");
    // Newest first.
    let ids: Vec<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted);
}

#[tokio::test]
async fn clearing_hides_older_entries_but_keeps_them_and_pages_work() {
    let app = spawn_app().await;
    let key = app.api_key("ann", 8).await;
    for n in 0..3 {
        let resp = app
            .client
            .post(app.url("/api/v1/instances"))
            .bearer_auth(&key)
            .json(
                &json!({"provider": "local", "offer_id": "this-machine", "label": format!("n{n}")}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let id = resp.json::<Value>().await.unwrap()["data"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let resp = app
            .admin(
                app.client
                    .delete(app.url(&format!("/api/v1/instances/{id}"))),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let log = entries(&app.command_log("").await);
    assert_eq!(find(&log, "start placeholder process for local_").len(), 3);
    assert!(find(&log, "start placeholder process")
        .iter()
        .all(|e| e["user"] == "user:ann"));
    let kills = find(&log, "kill -KILL local-");
    assert_eq!(kills.len(), 3);
    assert!(kills
        .iter()
        .all(|e| e["user"] == "admin:admin" && e["detail"] == "confirmed"));

    // Pages of two: 6 entries in 3 pages, no repeats.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let page = app.command_log(&query).await;
        seen.extend(entries(&page).into_iter().map(|e| e["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(
        seen,
        log.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
    );

    // Clear: the default view shows only the clear itself, by whom; nothing is deleted.
    let resp = app
        .admin(app.client.post(app.url("/api/clear-log")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Command log cleared successfully");
    let after = app.command_log("").await;
    let visible = entries(&after);
    assert_eq!(visible.len(), 1, "{visible:?}");
    assert_eq!(visible[0]["command"], "clear-log");
    assert_eq!(visible[0]["user"], "admin:admin");
    assert!(after["cleared_at"].is_string());
    let all = entries(&app.command_log("?include_cleared=true").await);
    assert_eq!(all.len(), 7);

    for query in [
        "?limit=0",
        "?limit=abc",
        "?cursor=nope",
        "?include_cleared=yes",
    ] {
        let resp = app
            .admin(app.client.get(app.url(&format!("/api/command-log{query}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "error");
        assert!(body["error"].is_string() && body["details"]["code"].is_string());
    }
}

#[tokio::test]
async fn only_admins_read_or_clear_the_log() {
    let app = spawn_app().await;
    let key = app.api_key("ann", 8).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/command-log"),
        (reqwest::Method::POST, "/api/clear-log"),
    ] {
        for auth in [
            None,
            Some(format!("Bearer {key}")),
            Some("Basic YWRtaW46bm8=".into()),
        ] {
            let mut req = app.client.request(method.clone(), app.url(path));
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} {auth:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["status"], "error");
        }
    }
    // A clear from another site is refused (Basic credentials ride along on such requests).
    let resp = app
        .admin(app.client.post(app.url("/api/clear-log")))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(app.state.store.last_clear().await.unwrap(), None);
}
