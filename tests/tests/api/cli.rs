//! The command-line client against a real local server, as an admin and a user drive it
//! from a terminal: a real process each time, its exit code and output checked.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn fleet(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["fleet"];
    all.extend_from_slice(args);
    fleet_cmd(app, &all, env).await
}

/// `gpufleet <group> --url <app> <rest…>`.
async fn fleet_cmd(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = tokio::process::Command::new(agent_program())
        .arg(args[0])
        .args(["--url", &app.url])
        .args(&args[1..])
        .env_remove("GPUFLEET_ADMIN_USER")
        .env_remove("GPUFLEET_ADMIN_PASSWORD")
        .env("HOME", &app.data_dir)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// `gpufleet fleet logs HOST --follow` as a real process, and its output line by line.
fn follow_logs(app: &TestApp, host: &str) -> (tokio::process::Child, Lines) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(agent_program())
        .args(["fleet", "--url", &app.url, "logs", host, "--follow"])
        .env("HOME", &app.data_dir)
        .envs(ADMIN.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Adds a line to `host`'s log as an admin forwarding it.
async fn push_log_line(app: &TestApp, host: &str, line: &str) {
    let pushed = app
        .admin(reqwest::Client::new().post(app.url("/api/vm-logs")))
        .json(&serde_json::json!({"log_group": "g", "log_stream": host, "messages": [line]}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
}

/// `fleet logs HOST --follow` prints what the VM had, then only what comes later: a line
/// pushed while it runs appears once, and nothing before it repeats.
async fn follow_prints_each_new_line_once(app: &TestApp, host: &str) {
    let (mut child, mut lines) = follow_logs(app, host);
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a first line")
        .unwrap()
        .unwrap();
    let marker = "followed-by-the-terminal";
    push_log_line(app, host, marker).await;
    let mut seen = vec![first.clone()];
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if line.contains(marker) {
                return true;
            }
        }
        false
    })
    .await;
    child.kill().await.unwrap();
    assert_eq!(found, Ok(true), "{seen:#?}");
    assert_eq!(seen.iter().filter(|l| **l == first).count(), 1, "{seen:#?}");
    assert_eq!(
        seen.iter().filter(|l| l.contains(marker)).count(),
        1,
        "{seen:#?}"
    );
}

const ADMIN: &[(&str, &str)] = &[
    ("GPUFLEET_ADMIN_USER", ADMIN_USER),
    ("GPUFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_drives_a_workshop_from_the_terminal() {
    let app = spawn_app_with(Options {
        config: Some(|c| c.collect.interval = Duration::from_secs(5)),
        ..Options::default()
    })
    .await;
    let empty = fleet(&app, &["status"], ADMIN).await;
    assert_eq!(empty.code, 0, "{}", empty.stderr);
    assert!(empty.stdout.starts_with("HOSTNAME"), "{}", empty.stdout);
    assert!(empty.stdout.contains("0 VM(s)"), "{}", empty.stdout);

    let nothing = fleet(&app, &["collect", "-o", "/dev/null"], ADMIN).await;
    assert_eq!(nothing.code, 1, "{}", nothing.stderr);
    assert!(nothing.stderr.contains("404"), "{}", nothing.stderr);

    let launched = fleet(&app, &["launch", "2", "--wait"], ADMIN).await;
    assert_eq!(launched.code, 0, "{}{}", launched.stdout, launched.stderr);
    assert!(
        launched.stdout.contains("2 running, 0 failed"),
        "{}",
        launched.stdout
    );
    assert!(
        !launched.stderr.contains('#'),
        "no progress bar when not a terminal"
    );

    let json = fleet(&app, &["status", "--json"], ADMIN).await;
    assert_eq!(json.code, 0);
    let fleet_json: Value = serde_json::from_str(&json.stdout).unwrap();
    let hosts: Vec<String> = fleet_json["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["hostname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts.len(), 2);

    // The agent ships its lines every 2 s: until the first batch the log is a 503.
    let mut log = fleet(&app, &["logs", &hosts[0]], ADMIN).await;
    for _ in 0..20 {
        if log.code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        log = fleet(&app, &["logs", &hosts[0]], ADMIN).await;
    }
    assert_eq!(log.code, 0, "{}", log.stderr);
    assert!(
        log.stdout.contains(&format!("agent[{}]", hosts[0])),
        "{}",
        log.stdout
    );
    follow_prints_each_new_line_once(&app, &hosts[0]).await;
    let unknown = fleet(&app, &["logs", "no-such-vm"], ADMIN).await;
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("404"), "{}", unknown.stderr);

    // Not a terminal and no --yes: nothing is asked, nothing destroyed.
    let refused = fleet(&app, &["destroy"], ADMIN).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("pass --yes"), "{}", refused.stderr);
    assert_eq!(app.state.store.list_vms().await.unwrap().len(), 2);

    let work = app.data_dir.join("work").join(&hosts[0]);
    std::fs::write(work.join("labels.slp"), b"from the terminal").unwrap();
    let destroyed = fleet(&app, &["destroy", "--yes"], ADMIN).await;
    assert_eq!(
        destroyed.code, 0,
        "{}{}",
        destroyed.stdout, destroyed.stderr
    );
    assert!(
        destroyed.stdout.contains("final sync done"),
        "{}",
        destroyed.stdout
    );
    assert!(app.state.store.list_vms().await.unwrap().is_empty());

    let zip = app.data_dir.join("work.zip");
    let collected = fleet(&app, &["collect", "-o", zip.to_str().unwrap()], ADMIN).await;
    assert_eq!(collected.code, 0, "{}", collected.stderr);
    let bytes = std::fs::read(&zip).unwrap();
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    let needle = b"labels.slpfrom the terminal";
    assert!(bytes.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test]
async fn credentials_and_reachability_fail_with_their_own_exit_codes() {
    let app = spawn_app().await;
    let wrong = fleet(
        &app,
        &["status"],
        &[("GPUFLEET_ADMIN_PASSWORD", "not-the-password")],
    )
    .await;
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("GPUFLEET_ADMIN_PASSWORD"),
        "{}",
        wrong.stderr
    );

    let none = fleet(&app, &["status"], &[]).await;
    assert_eq!(none.code, 1);
    assert!(none.stderr.contains("no admin password"), "{}", none.stderr);

    let usage = fleet(&app, &["launch"], ADMIN).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);

    let unreachable = tokio::process::Command::new(agent_program())
        .args(["fleet", "--url", "http://127.0.0.1:9", "status"])
        .envs(ADMIN.iter().copied())
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));

    // A credentials file: refused while others may read it, used once it is 0600.
    let file = app.data_dir.join("credentials");
    std::fs::write(
        &file,
        format!("GPUFLEET_ADMIN_USER={ADMIN_USER}\nGPUFLEET_ADMIN_PASSWORD={ADMIN_PASSWORD}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.to_str().unwrap();
    let open = fleet(&app, &["--credentials-file", path, "status"], &[]).await;
    assert_eq!(open.code, 1);
    assert!(open.stderr.contains("chmod 600"), "{}", open.stderr);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ok = fleet(&app, &["--credentials-file", path, "status"], &[]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

/// A user with an API key an admin made from the terminal: GPUs requested and waited for,
/// listed and released; offers searched; an instance run from one, stopped, started, deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_requests_gpus_and_runs_instances_from_the_terminal() {
    let app = spawn_app().await;
    let created = fleet_cmd(
        &app,
        &["keys", "create", "--user", "alice", "--label", "laptop"],
        ADMIN,
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let key = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_string();
    let key_id = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key_id:"))
        .unwrap()
        .trim()
        .to_string();
    let listed = fleet_cmd(&app, &["keys", "list"], ADMIN).await;
    assert!(
        listed.stdout.contains("alice") && listed.stdout.contains("laptop"),
        "{}",
        listed.stdout
    );
    let user: &[(&str, &str)] = &[("GPUFLEET_API_KEY", &key), ("GPUFLEET_USER", "alice")];

    let request = fleet_cmd(
        &app,
        &["gpus", "request", "--gpus", "1", "--hours", "1", "--wait"],
        user,
    )
    .await;
    assert_eq!(request.code, 0, "{}{}", request.stdout, request.stderr);
    assert!(request.stdout.contains(": completed"), "{}", request.stdout);
    assert!(request.stdout.contains("ssh "), "{}", request.stdout);
    let id = request
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let list = fleet_cmd(&app, &["gpus", "list", "--json"], user).await;
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list[0]["request_id"], id.as_str());
    let released = fleet_cmd(&app, &["gpus", "release", &id], user).await;
    assert_eq!(released.code, 0, "{}", released.stderr);
    assert!(released.stdout.contains("released"), "{}", released.stdout);

    let offers = fleet_cmd(&app, &["offers", "search", "--json"], user).await;
    assert_eq!(offers.code, 0, "{}", offers.stderr);
    let offers: Value = serde_json::from_str(&offers.stdout).unwrap();
    let prices: Vec<f64> = offers
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["price_per_hour"].as_f64().unwrap())
        .collect();
    assert!(!prices.is_empty());
    assert!(
        prices.windows(2).all(|w| w[0] <= w[1]),
        "cheapest first: {prices:?}"
    );
    let table = fleet_cmd(&app, &["offers", "search"], user).await;
    assert!(table.stdout.starts_with("OFFER"), "{}", table.stdout);

    let offer = offers[0]["id"].as_str().unwrap();
    let provider = offers[0]["provider"].as_str().unwrap();
    let made = fleet_cmd(
        &app,
        &[
            "instances",
            "create",
            "--provider",
            provider,
            "--offer-id",
            offer,
            "--label",
            "cli",
            "--json",
        ],
        user,
    )
    .await;
    assert_eq!(made.code, 0, "{}{}", made.stdout, made.stderr);
    let instance: Value = serde_json::from_str(&made.stdout).unwrap();
    let iid = instance["id"].as_str().unwrap();
    for action in ["stop", "start", "delete"] {
        let r = fleet_cmd(&app, &["instances", action, iid], user).await;
        assert_eq!(r.code, 0, "{action}: {}", r.stderr);
    }

    // A revoked key is refused with the credentials exit code.
    let revoked = fleet_cmd(&app, &["keys", "revoke", &key_id], ADMIN).await;
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    let refused = fleet_cmd(&app, &["gpus", "list"], user).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("GPUFLEET_API_KEY"),
        "{}",
        refused.stderr
    );
}

/// On a terminal (`script` gives the client one), `fleet launch --wait` draws its progress
/// bar until every VM runs; the same command in a pipe drew none (above).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_wait_draws_a_progress_bar_on_a_terminal() {
    let app = spawn_app().await;
    let command = format!(
        "{} fleet --url {} launch 2 --wait",
        agent_program().display(),
        app.url
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", &app.data_dir)
        .envs(ADMIN.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{terminal}");
    // Redrawn in place, full once both run.
    let full = format!("\r[{}] 2 running, 0 failed, 0 booting", "#".repeat(30));
    assert!(terminal.contains(&full), "{terminal:?}");
    assert!(terminal.contains("2 running, 0 failed"), "{terminal:?}");
}

/// Following a VM that has shipped no log yet waits for its first line instead of quitting
/// on the server's "not yet" (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_waits_for_a_quiet_vm_first_line() {
    let app = spawn_app().await;
    app.register_vm("quiet-vm").await;
    let (mut child, mut lines) = follow_logs(&app, "quiet-vm");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "follow quit before the first line"
    );
    push_log_line(&app, "quiet-vm", "first words").await;
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the first line")
        .unwrap()
        .unwrap();
    child.kill().await.unwrap();
    assert!(line.contains("first words"), "{line}");
}
