//! Slow and idle clients cannot starve the local server: the real server process, with
//! thousands of idle, slow-header and slow-body connections open, still answers `/health`
//! and a claim at once, closes those connections after its timeouts, and keeps working
//! with a low open-files limit.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::durability::server_url;
use crate::helpers::*;

/// Starts `gpufleet serve` under `ulimit` (a shell sets it) with short timeouts, after
/// seeding `seeded` running VMs.
fn start_server(dir: &Path, ulimit: &str, seeded: u32) -> (Child, String) {
    let seeded_ok = Command::new(agent_program())
        .args(["seed-vms", "--count", &seeded.to_string(), "--data-dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(seeded_ok.success());
    let mut server = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
        .arg(agent_program())
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--header-timeout-secs", "2", "--body-timeout-secs", "2"])
        .env("GPUFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = server_url(&mut server);
    (server, url)
}

fn stop(mut server: Child) {
    let _ = server.kill();
    let _ = server.wait();
}

/// The kinds of connection an attacker (or a bad network) leaves open.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// Connects and sends nothing.
    Idle,
    /// Sends half a request line and headers, then nothing.
    SlowHeaders,
    /// Sends the headers of a POST and part of its body, then nothing.
    SlowBody,
    /// Makes one complete request on a keep-alive connection, then nothing.
    KeptAlive,
}

async fn open(addr: &str, stall: Stall) -> Option<TcpStream> {
    let mut stream = tokio::time::timeout(Duration::from_secs(20), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let sent: &[u8] = match stall {
        Stall::Idle => b"",
        Stall::SlowHeaders => b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        Stall::SlowBody => {
            b"POST /api/request_vm HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail="
        }
        Stall::KeptAlive => b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    };
    stream.write_all(sent).await.ok()?;
    if let Stall::KeptAlive = stall {
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.ok()?;
        if !buf.get(..n)?.starts_with(b"HTTP/1.1 200") {
            return None; // closed to make room (the low-limit test)
        }
    }
    Some(stream)
}

/// True once the server has closed the connection (EOF or reset), reading whatever it
/// sent first.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// `/health` and a claim, each answered within `limit` (a hang is the failure).
async fn health_and_claim(url: &str, email: &str) -> (Duration, Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let health = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health_took = started.elapsed();
    let started = Instant::now();
    let claim = client
        .post(format!("{url}/api/request_vm"))
        .form(&[("email", email), ("crd_command", CRD)])
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), 200);
    let html = claim.text().await.unwrap();
    assert!(assigned_hostname(&html).is_some(), "{html}");
    (health_took, started.elapsed())
}

async fn open_many(addr: &str, per_kind: usize) -> Vec<(Stall, TcpStream)> {
    let kinds = [
        Stall::Idle,
        Stall::SlowHeaders,
        Stall::SlowBody,
        Stall::KeptAlive,
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..per_kind * kinds.len() {
        let addr = addr.to_string();
        let kind = kinds[i % kinds.len()];
        tasks.spawn(async move { open(&addr, kind).await.map(|s| (kind, s)) });
    }
    let mut open = Vec::new();
    while let Some(done) = tasks.join_next().await {
        open.extend(done.unwrap());
    }
    open
}

#[tokio::test]
async fn stalled_connections_are_closed_and_never_starve_requests() {
    let dir = tempfile::tempdir().unwrap();
    // A soft limit of 256 that the server raises to the hard one.
    let (server, url) = start_server(dir.path(), "-Sn 256", 2);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(open_files[3], open_files[4], "soft = hard: {limits}");

    let addr = url.trim_start_matches("http://").to_string();
    let mut stalled = open_many(&addr, 750).await;
    assert_eq!(stalled.len(), 3000, "every connection was accepted");
    let (health, claim) = health_and_claim(&url, "first@example.org").await;
    println!("with 3,000 stalled connections open: /health {health:?}, claim {claim:?}");

    // Every stalled connection is closed by the server within its 2 s timeouts (+ slack).
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut still_open = Vec::new();
    for (kind, stream) in &mut stalled {
        let left = deadline.saturating_duration_since(Instant::now());
        if !closed_by_server(stream, left).await {
            still_open.push(*kind);
        }
    }
    assert!(still_open.is_empty(), "not closed: {still_open:?}");
    drop(stalled);
    health_and_claim(&url, "second@example.org").await;
    stop(server);
}

#[tokio::test]
async fn a_low_open_files_limit_closes_the_oldest_idle_connection_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    // Soft and hard 1,024: the cap (limit minus a reserve) is reached by the idle ones.
    let (server, url) = start_server(dir.path(), "-n 1024", 1);
    let addr = url.trim_start_matches("http://").to_string();
    let stalled = open_many(&addr, 750).await;
    let (health, claim) = health_and_claim(&url, "only@example.org").await;
    println!(
        "fd limit 1,024 with {} stalled connections attempted: /health {health:?}, claim {claim:?}",
        stalled.len()
    );
    drop(stalled);
    stop(server);
}
