//! VMs that are really alive: a VM whose agent died leaves the pool within the heartbeat
//! window and is never handed out, its participant sees it and moves to a working VM.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::seats::destroy_all;

/// The heartbeat window of these tests: agents call every second.
fn short_heartbeat(config: &mut shared::config::Config) {
    config.heartbeat_timeout = Duration::from_secs(3);
}

pub fn kill_agent(instance_id: &str) {
    let pid = instance_id.trim_start_matches("local-");
    let status = std::process::Command::new("kill")
        .args(["-KILL", pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {pid}");
}

pub async fn launch_and_wait(app: &TestApp, n: usize) {
    let resp = app
        .admin(app.client.post(app.url("/api/launch")))
        .form(&[("num_vms", n.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    eventually(Duration::from_secs(60), "VMs booted and free", || async {
        app.free_count().await == n as u64
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_agent_leaves_the_pool_and_is_never_assigned() {
    dead_agent_is_never_assigned(
        spawn_app_with(Options {
            config: Some(short_heartbeat),
            ..Options::default()
        })
        .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_agent_leaves_the_pool_and_is_never_assigned_on_dynamodb() {
    dead_agent_is_never_assigned(
        spawn_app_with(Options {
            config: Some(short_heartbeat),
            store: Some(std::sync::Arc::new(dynamo_store().await)),
            ..Options::default()
        })
        .await,
    )
    .await;
}

async fn dead_agent_is_never_assigned(app: TestApp) {
    launch_and_wait(&app, 3).await;
    // Healthy agents keep their VMs free well past the window: they heartbeat in time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(app.free_count().await, 3);
    let vms = app.state.store.list_vms().await.unwrap();
    let dead = vms[0].clone();
    kill_agent(dead.instance_id.as_deref().unwrap());
    eventually(
        Duration::from_secs(10),
        "the dead VM left the free count",
        || async { app.free_count().await == 2 },
    )
    .await;
    // 200 claims race after its death: the two live VMs go, the dead one never.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (client, url) = (app.client.clone(), app.url("/api/request_vm"));
        tasks.spawn(async move {
            let html = client
                .post(url)
                .form(&[
                    ("email", format!("race{i}@example.org").as_str()),
                    ("crd_command", CRD),
                ])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assigned_hostname(&html)
        });
    }
    let mut assigned = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(h) = r.unwrap() {
            assigned.push(h);
        }
    }
    assert_eq!(assigned.len(), 2, "{assigned:?}");
    assert!(
        !assigned.contains(&dead.hostname),
        "the dead VM was handed out"
    );
    // The sweep marks it, with the reason.
    eventually(
        Duration::from_secs(10),
        "the sweep marked the dead VM",
        || async {
            let vm = app
                .state
                .store
                .get_vm(&dead.hostname)
                .await
                .unwrap()
                .unwrap();
            vm.status.as_str() == "unknown"
                && vm.status_reason.is_some_and(|r| r.contains("no heartbeat"))
        },
    )
    .await;
    let (_, fleet) = app.admin_get("/admin/instances", true).await;
    let fleet: Value = serde_json::from_str(&fleet).unwrap();
    assert_eq!(fleet["counts"]["free"], 0);
    destroy_all(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_of_a_dead_vm_moves_to_a_working_one() {
    let app = spawn_app_with(Options {
        config: Some(short_heartbeat),
        ..Options::default()
    })
    .await;
    launch_and_wait(&app, 2).await;
    let (html, seat) = app.claim_seat("owner@example.org", CRD).await;
    let seat = seat.unwrap();
    let first = assigned_hostname(&html).unwrap();
    let first_pin = assigned_pin(&html).unwrap();
    let seat_page = || async {
        let resp = app
            .client
            .get(app.url("/seat"))
            .header("cookie", format!("gpufleet_seat={seat}"))
            .send()
            .await
            .unwrap();
        resp.text().await.unwrap()
    };
    // A working VM: the participant cannot leave it on their own.
    assert!(seat_page().await.contains("id=\"alive\""));
    let move_ = || async {
        let resp = app
            .client
            .post(app.url(&format!("/seat/{seat}/move")))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let (status, body) = move_().await;
    assert_eq!(status, 409, "{body}");

    let vm = app.state.store.get_vm(&first).await.unwrap().unwrap();
    kill_agent(vm.instance_id.as_deref().unwrap());
    eventually(
        Duration::from_secs(10),
        "the seat page says the VM died",
        || async { seat_page().await.contains("id=\"dead\"") },
    )
    .await;
    let (status, body) = move_().await;
    assert_eq!(status, 200, "{body}");
    let second = assigned_hostname(&body).unwrap();
    assert_ne!(second, first);
    assert_ne!(assigned_pin(&body).unwrap(), first_pin);
    // The dead VM stays marked and out of the pool; the email moved with the seat.
    let old = app.state.store.get_vm(&first).await.unwrap().unwrap();
    assert_eq!(old.status.as_str(), "error");
    assert!(old.assignment.as_ref().is_some_and(|a| a.is_retired()));
    assert!(old
        .status_reason
        .is_some_and(|r| r.contains("stopped responding")));
    let new = app.state.store.get_vm(&second).await.unwrap().unwrap();
    assert_eq!(new.assignment.unwrap().email, "owner@example.org");
    let html = app.claim("owner@example.org", CRD).await;
    assert!(
        assigned_hostname(&html).is_none(),
        "never two VMs for one email"
    );
    assert_eq!(app.free_count().await, 0);
    // The new VM's agent received the command.
    let file = app
        .data_dir
        .join("agents")
        .join(format!("{second}.assignment.json"));
    eventually(
        Duration::from_secs(30),
        "the new VM got the command",
        || async { std::fs::read_to_string(&file).is_ok_and(|s| s.contains("0AbCd-ef_GH")) },
    )
    .await;
    // Nothing free to move to: a clear 503, nothing changes.
    let vm = app.state.store.get_vm(&second).await.unwrap().unwrap();
    kill_agent(vm.instance_id.as_deref().unwrap());
    eventually(
        Duration::from_secs(10),
        "the second VM died too",
        || async { seat_page().await.contains("id=\"dead\"") },
    )
    .await;
    let (status, body) = move_().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no VM is available"));
    let still = app.state.store.get_vm(&second).await.unwrap().unwrap();
    assert!(still.assignment.is_some());
    destroy_all(&app).await;
}

#[tokio::test]
async fn a_vm_stuck_booting_is_failed_by_the_sweep() {
    let clock = std::sync::Arc::new(shared::adapters::OffsetClock::default());
    let app = spawn_app_with(Options {
        config: Some(|c| c.boot_timeout = Duration::from_secs(60)),
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    app.register_initializing_vm("stuck").await;
    app.register_vm("fine").await;
    let report =
        shared::usecases::liveness::sweep(&*app.state.store, &*app.state.clock, &app.state.config)
            .await
            .unwrap();
    assert!(report.is_empty(), "{report:?}");
    clock.advance(Duration::from_secs(91));
    // The running VM went quiet too (the clock jumped past its 90 s window).
    let report =
        shared::usecases::liveness::sweep(&*app.state.store, &*app.state.clock, &app.state.config)
            .await
            .unwrap();
    assert_eq!(report.boot_timed_out, vec!["stuck".to_string()]);
    assert_eq!(report.lost, vec!["fine".to_string()]);
    let vm = app.state.store.get_vm("stuck").await.unwrap().unwrap();
    assert_eq!(vm.status.as_str(), "error");
    // An old VM whose agent restarts reports `initializing` again: it gets a whole boot
    // window from that call, not from its launch.
    let (_, token) = app.register_vm("restarted").await;
    clock.advance(Duration::from_secs(3600));
    app.report(
        &token,
        "/api/vm-status",
        serde_json::json!({"hostname": "restarted", "status": "initializing"}),
    )
    .await;
    clock.advance(Duration::from_secs(30));
    let report =
        shared::usecases::liveness::sweep(&*app.state.store, &*app.state.clock, &app.state.config)
            .await
            .unwrap();
    assert!(
        !report.boot_timed_out.contains(&"restarted".to_string()),
        "{report:?}"
    );
    clock.advance(Duration::from_secs(31));
    let report =
        shared::usecases::liveness::sweep(&*app.state.store, &*app.state.clock, &app.state.config)
            .await
            .unwrap();
    assert_eq!(report.boot_timed_out, vec!["restarted".to_string()]);
    assert!(vm
        .status_reason
        .unwrap()
        .contains("did not finish booting within 60 s"));
}

#[tokio::test]
async fn the_heartbeat_interval_fits_the_window() {
    let app = spawn_app_with(Options {
        config: Some(|c| c.heartbeat_timeout = Duration::from_secs(30)),
        ..Options::default()
    })
    .await;
    let (hostname, token) = app.register_initializing_vm("hb").await;
    let resp = app
        .client
        .post(app.url("/api/vm-status"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"hostname": hostname, "status": "running"}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["heartbeat_interval_seconds"], 10);
}
