//! What local mode acknowledged, it finishes: the real server process is SIGKILLed right
//! after a launch's 202 and in the middle of a destroy, then started again on the same
//! address; every launched VM comes up, no lock outlives the crash, and no VM is assignable
//! without a live agent. The data directory is the owner's alone.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shared::adapters::SqliteStore;
use shared::ports::VmStore;

use crate::durability::server_url;
use crate::helpers::*;

/// A free port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(dir: &Path, port: u16) -> (Child, String) {
    let mut server = Command::new(agent_program())
        .args([
            "serve",
            "--agent-boot-delay-secs",
            "0",
            "--agent-gpu",
            "healthy",
        ])
        .args(["--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("GPUFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = server_url(&mut server);
    (server, url)
}

fn sigkill(mut server: Child) {
    server.kill().unwrap(); // SIGKILL: no shutdown code runs
    server.wait().unwrap();
}

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

fn admin(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD))
}

async fn launch(client: &reqwest::Client, url: &str, n: u32) -> reqwest::Response {
    admin(client.post(format!("{url}/api/launch")))
        .header("accept", "application/json")
        .form(&[("num_vms", n.to_string())])
        .send()
        .await
        .unwrap()
}

async fn fleet(client: &reqwest::Client, url: &str) -> Value {
    admin(client.get(format!("{url}/admin/instances")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every VM the store would hand out has a live agent behind it.
async fn no_assignable_vm_without_an_agent(dir: &Path) {
    let store = SqliteStore::open(dir).unwrap();
    for vm in store.list_vms().await.unwrap() {
        if vm.is_free_candidate() {
            let id = vm.instance_id.as_deref().unwrap_or("none");
            assert!(pid_alive(id), "{} is free with a dead agent", vm.hostname);
        }
    }
}

async fn destroy(client: &reqwest::Client, url: &str) -> reqwest::Response {
    admin(client.post(format!("{url}/destroy")))
        .header("accept", "application/json")
        .form(&[("confirm", "yes"), ("confirm_in_use", "yes")])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_right_after_a_launch_then_restart_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::new();
    let (server, url) = start_server(dir.path(), port);
    let resp = launch(&client, &url, 60).await;
    assert_eq!(resp.status(), 202);
    sigkill(server); // within a millisecond or so of the 202
    let body: Value = resp.json().await.unwrap();
    let hostnames: Vec<String> = body["operation"]["hostnames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    assert_eq!(hostnames.len(), 60);

    let (server, url) = start_server(dir.path(), port);
    wait_for("every launched VM running", 120, || async {
        let f = fleet(&client, &url).await;
        let running = f["vms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["status"] == "running" && v["alive"] == true)
            .count();
        running == 60
    })
    .await;
    let f = fleet(&client, &url).await;
    let names: Vec<&str> = f["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["hostname"].as_str().unwrap())
        .collect();
    for h in &hostnames {
        assert!(names.contains(&h.as_str()), "{h} was acknowledged");
    }
    assert_eq!(names.len(), 60, "no VM twice, none extra");
    // One agent per VM, each alive.
    let ids: std::collections::HashSet<String> = f["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["instance_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 60);
    assert!(ids.iter().all(|id| pid_alive(id)));
    // No lock outlived the crash: the next launch is accepted at once.
    let resp = launch(&client, &url, 1).await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    no_assignable_vm_without_an_agent(dir.path()).await;

    assert!(destroy(&client, &url).await.status().is_success());
    assert!(
        ids.iter().all(|id| !pid_alive(id)),
        "destroy ended every agent"
    );
    sigkill(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_destroy_then_restart_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::new();
    let (server, url) = start_server(dir.path(), port);
    assert_eq!(launch(&client, &url, 40).await.status(), 202);
    wait_for("40 VMs free", 120, || async {
        fleet(&client, &url).await["counts"]["free"] == 40
    })
    .await;
    let ids: Vec<String> = fleet(&client, &url).await["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["instance_id"].as_str().unwrap().to_string())
        .collect();
    // Kill the server while the destroy is ending agents.
    let destroying = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { destroy(&client, &url).await })
    };
    wait_for("the destroy started", 30, || async {
        ids.iter().any(|id| !pid_alive(id))
    })
    .await;
    sigkill(server);
    let _ = destroying.await;

    let (server, url) = start_server(dir.path(), port);
    no_assignable_vm_without_an_agent(dir.path()).await;
    // The restart finished the destroy: no records, no agents, and no lock.
    let f = fleet(&client, &url).await;
    assert_eq!(f["vms"].as_array().unwrap().len(), 0, "{f}");
    wait_for("every agent ended", 30, || async {
        ids.iter().all(|id| !pid_alive(id))
    })
    .await;
    let resp = launch(&client, &url, 1).await;
    assert_eq!(resp.status(), 202);
    wait_for("the new VM free", 60, || async {
        fleet(&client, &url).await["counts"]["free"] == 1
    })
    .await;
    assert!(destroy(&client, &url).await.status().is_success());
    sigkill(server);
}

#[tokio::test]
async fn the_data_directory_is_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let app = spawn_app_in(&dir, Options::default()).await;
    app.register_vm("perm").await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for file in ["gpufleet.db", "gpufleet.db-wal", "gpufleet.db-shm"] {
        let path = dir.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
    assert!(dir.join("gpufleet.db-wal").exists());
    drop(app);
    // An existing directory (a home, a shared folder) is not changed; the files still are 0600.
    let existing = parent.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = spawn_app_in(&existing, Options::default()).await;
    app.register_vm("perm").await;
    assert_eq!(mode(&existing), 0o755);
    assert_eq!(mode(&existing.join("gpufleet.db")), 0o600);
}
