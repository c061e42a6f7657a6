//! A full disk under local mode: every write that needs space answers 503 naming the cause
//! instead of an opaque 500, the log names it too, `/health` proves a write, and the server
//! recovers by itself once the disk does; a read-only data directory is refused at start.
//! The real server process runs in a mount namespace of its own on a 4 MiB tmpfs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::durability::server_url;
use crate::helpers::*;

fn start_on_small_tmpfs(dir: &Path, log: &Path) -> (Child, String) {
    let script = r#"mount -t tmpfs -o size=4m tmpfs "$1" && chmod 700 "$1" \
        && "$2" seed-vms --count 3 --data-dir "$1" --tokens-out "$1/tokens.json" \
        && exec "$2" serve --addr 127.0.0.1:0 --data-dir "$1""#;
    let mut server = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(dir)
        .arg(agent_program())
        .env("GPUFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let url = server_url(&mut server);
    (server, url)
}

async fn health(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(format!("{url}/health")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn claim(client: &reqwest::Client, url: &str, email: &str) -> (u16, String) {
    let resp = client
        .post(format!("{url}/api/request_vm"))
        .header("accept", "application/json")
        .form(&[("email", email), ("crd_command", CRD)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Pushes ~60 KB of log lines as a VM (the database must grow to take them).
async fn push_logs(
    client: &reqwest::Client,
    url: &str,
    hostname: &str,
    token: &str,
) -> (u16, String) {
    let lines: Vec<String> = (0..600)
        .map(|i| format!("{i:04} {}", "x".repeat(90)))
        .collect();
    let resp = client
        .post(format!("{url}/api/vm-logs/{hostname}"))
        .bearer_auth(token)
        .json(&serde_json::json!({"messages": lines}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Fills the server's tmpfs (seen through its mount namespace) until it is full.
fn fill(server_dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let filler = server_dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    filler
}

#[tokio::test]
async fn a_full_disk_is_a_clear_503_and_the_server_recovers() {
    if !can_sandbox() {
        eprintln!("skipped: needs root and mount namespaces (unshare --mount)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (mut server, url) = start_on_small_tmpfs(&data, &log);
    // The server's view of its data directory (inside its mount namespace).
    let seen = Path::new("/proc")
        .join(server.id().to_string())
        .join("root")
        .join(data.strip_prefix("/").unwrap());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let (status, body) = health(&client, &url).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = claim(&client, &url, "before@example.org").await;
    assert_eq!(status, 200, "{body}");

    let tokens: Value =
        serde_json::from_str(&std::fs::read_to_string(seen.join("tokens.json")).unwrap()).unwrap();
    let vm = &tokens[2];
    let (hostname, token) = (
        vm["hostname"].as_str().unwrap(),
        vm["token"].as_str().unwrap(),
    );
    let (status, body) = push_logs(&client, &url, hostname, token).await;
    assert_eq!(status, 200, "{body}");

    // Disk full: writes that need new space are refused with the cause, never a 500
    // (small ones may still fit in space the database already holds).
    let filler = fill(&seen);
    let mut refused = None;
    for _ in 0..20 {
        let (status, body) = push_logs(&client, &url, hostname, token).await;
        assert!(status == 200 || status == 503, "{status} {body}");
        if status == 503 {
            refused = Some(body);
            break;
        }
    }
    let refused = refused.expect("a write that needs space is refused");
    assert!(refused.contains("the disk is full"), "{refused}");
    let (status, body) = claim(&client, &url, "full@example.org").await;
    assert!(status == 200 || status == 503, "{status} {body}");
    let (status, body) = health(&client, &url).await;
    assert!(status == 200 || status == 503, "{status} {body}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("the disk is full"), "{logged}");
    assert!(!logged.contains("panicked"), "{logged}");

    // Space again: it recovers without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = push_logs(&client, &url, hostname, token).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = health(&client, &url).await;
    assert_eq!(status, 200, "{body}");

    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_read_only_data_directory_is_refused_at_start_naming_it() {
    if !can_sandbox() {
        eprintln!("skipped: needs root and mount namespaces (unshare --mount)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = r#"mount -t tmpfs -o size=4m tmpfs "$1" \
        && "$2" seed-vms --count 1 --data-dir "$1" > /dev/null \
        && mount -o remount,ro "$1" \
        && exec "$2" serve --addr 127.0.0.1:0 --data-dir "$1""#;
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(dir.path())
        .arg(agent_program())
        .env("GPUFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "it must not serve on a read-only store"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
}
