//! The whole flow with real agent processes: launch 3, they boot and register, a claim
//! reaches the right agent with the right PIN and command, destroy removes them all.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

fn pid_alive(instance_id: &str) -> bool {
    let pid = instance_id.trim_start_matches("local-");
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_claim_and_destroy_with_real_agents() {
    launch_claim_destroy(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_claim_and_destroy_with_real_agents_on_dynamodb() {
    launch_claim_destroy(spawn_app_on_dynamodb().await).await;
}

async fn launch_claim_destroy(app: TestApp) {
    // Launch through the admin form path, as a browser would.
    let resp = app
        .admin(app.client.post(app.url("/admin/create")))
        .form(&[("instance_count", "3")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(resp.text().await.unwrap().contains("Launching 3 VM(s)"));

    eventually(Duration::from_secs(60), "3 VMs booted and free", || async {
        app.free_count().await == 3
    })
    .await;
    let vms = app.state.store.list_vms().await.unwrap();
    assert_eq!(vms.len(), 3);
    for vm in &vms {
        let id = vm.instance_id.as_deref().expect("instance id recorded");
        assert!(pid_alive(id), "agent {id} runs");
        assert_eq!(vm.gpu_health.as_str(), "healthy");
        assert!(vm.last_seen_at.is_some());
    }

    // Each agent shipped its own log lines and its startup timing.
    for vm in &vms {
        let path = format!("/api/vm-logs/{}", vm.hostname);
        eventually(
            Duration::from_secs(60),
            "the agent's log lines arrived",
            || {
                let path = path.clone();
                let app = &app;
                async move {
                    let (status, body) = app.admin_get(&path, true).await;
                    status == 200 && body.contains("waiting for an assignment")
                }
            },
        )
        .await;
        let stored = app.state.store.get_vm(&vm.hostname).await.unwrap().unwrap();
        let agent = stored.metrics.stage("agent");
        assert!(
            agent.duration.is_some_and(|d| d >= 0.0),
            "{:?}",
            stored.metrics
        );
        assert!(stored.metrics.total_seconds().is_some());
    }

    let html = app.claim("e2e@example.org", CRD).await;
    let hostname = assigned_hostname(&html).expect("assigned");
    let pin = assigned_pin(&html).expect("pin");
    assert!(vms.iter().any(|v| v.hostname == hostname));

    // The agent of exactly that VM received the assignment.
    let assignment_file = app
        .data_dir
        .join("agents")
        .join(format!("{hostname}.assignment.json"));
    eventually(
        Duration::from_secs(60),
        "the agent received its assignment",
        || {
            let path = assignment_file.clone();
            async move { path.exists() }
        },
    )
    .await;
    let received: Value =
        serde_json::from_str(&std::fs::read_to_string(&assignment_file).unwrap()).unwrap();
    assert_eq!(received["hostname"], hostname.as_str());
    assert_eq!(received["pin"], pin.as_str());
    assert!(received["command"]
        .as_str()
        .unwrap()
        .contains("--code=\"4/0AbCd-ef_GH\""));
    let others_got_nothing = vms.iter().filter(|v| v.hostname != hostname).all(|v| {
        !app.data_dir
            .join("agents")
            .join(format!("{}.assignment.json", v.hostname))
            .exists()
    });
    assert!(others_got_nothing);
    let log = std::fs::read_to_string(app.data_dir.join("agents").join(format!("{hostname}.log")))
        .unwrap();
    assert!(
        log.contains("dry run"),
        "without --execute-crd nothing runs: {log}"
    );
    assert!(!log.contains(&pin), "the PIN is not logged: {log}");

    // Destroy: every agent process ends, then every record goes.
    let resp = app
        .admin(app.client.post(app.url("/admin/destroy")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["operation"]["status"], "succeeded", "{body}");
    for vm in &vms {
        assert!(
            !pid_alive(vm.instance_id.as_deref().unwrap()),
            "{} stopped",
            vm.hostname
        );
    }
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
    assert_eq!(app.free_count().await, 0);

    // The operation is on record.
    let op: Value = app
        .admin(app.client.get(app.url(&format!(
            "/api/operations/{}",
            body["operation_id"].as_str().unwrap()
        ))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(op["operation"]["kind"], "destroy");
    assert_eq!(op["vms"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_second_operation_while_one_runs_is_refused() {
    let app = spawn_app().await;
    // An operation that began just now and is still running (as if another request were
    // mid-launch).
    let op = shared::domain::Operation::start(
        shared::domain::OperationKind::Launch,
        app.state.clock.now_millis(),
    );
    app.state.store.begin_operation(&op, 900_000).await.unwrap();
    for path in ["/api/launch", "/destroy"] {
        let resp = app
            .admin(app.client.post(app.url(path)))
            .header("accept", "application/json")
            .form(&[("num_vms", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 409, "{path}");
    }
    assert!(app.state.store.list_vms().await.unwrap().is_empty());
}
