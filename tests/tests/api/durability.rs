//! Records survive a restart, and a SIGKILL loses nothing that was acknowledged.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use shared::adapters::SqliteStore;
use shared::ports::VmStore;

use crate::helpers::*;

/// Reads the server's output up to the line that announces its URL.
pub fn server_url(server: &mut std::process::Child) -> String {
    let mut out = BufReader::new(server.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the server exited");
        if let Some(url) = line.trim().strip_prefix("gpufleet local mode: ") {
            let url = url.to_string();
            // Keep draining its output so it never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            return url;
        }
    }
}

#[tokio::test]
async fn a_restart_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_app_in(dir.path(), Options::default()).await;
    for i in 0..5 {
        app.register_vm(&format!("keep-{i}")).await;
    }
    let (_, seat) = app.claim_seat("keeper@example.org", CRD).await;
    let before = app.state.store.list_vms().await.unwrap();
    app.stop().await;
    drop(app);

    let app = spawn_app_in(dir.path(), Options::default()).await;
    let after = app.state.store.list_vms().await.unwrap();
    assert_eq!(before, after);
    assert_eq!(app.free_count().await, 4);
    // The seat still shows the same VM after the restart.
    let html = app
        .client
        .get(app.url("/seat"))
        .header("cookie", format!("gpufleet_seat={}", seat.expect("seat")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let held = before.iter().find(|v| v.assignment.is_some()).unwrap();
    assert_eq!(
        assigned_hostname(&html).as_deref(),
        Some(held.hostname.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_acknowledged_claim() {
    let dir = tempfile::tempdir().unwrap();
    let program = agent_program(); // the gpufleet CLI
    let seeded = Command::new(&program)
        .args(["seed-vms", "--count", "30", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );

    let mut server = Command::new(&program)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("GPUFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = server_url(&mut server);

    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let html = client
            .post(format!("{url}/api/request_vm"))
            .form(&[
                ("email", format!("k{i}@example.org").as_str()),
                ("crd_command", CRD),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        acknowledged.push((
            format!("k{i}@example.org"),
            assigned_hostname(&html).unwrap(),
            assigned_pin(&html).unwrap(),
        ));
    }
    server.kill().unwrap(); // SIGKILL: no shutdown code runs
    server.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let store = SqliteStore::open(dir.path()).unwrap();
    for (email, hostname, pin) in acknowledged {
        let vm = store.get_vm(&hostname).await.unwrap().expect("VM kept");
        let a = vm.assignment.expect("assignment kept");
        assert_eq!(
            (a.email.as_str(), a.pin.as_str()),
            (email.as_str(), pin.as_str())
        );
    }
    assert_eq!(store.count_assignable(0).await.unwrap(), 10);
}
