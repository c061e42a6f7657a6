//! The agent starts Chrome Remote Desktop as the desktop user, never as root: a fake
//! `start-host` that refuses root (as the real one does) records who ran it. A failing host
//! or a missing user makes the VM `error` with the reason. These run the real agent process
//! with `--execute-crd`, as root (CI runs as root; elsewhere they say so and skip).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::*;

const CRD_2: &str = "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/0NewCode-42\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)";

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A start-host stand-in in a directory every user can enter: it refuses root like the real
/// one, then records its identity, environment and arguments next to itself.
fn fake_start_host(dir: &Path, exit_code: i32) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("start-host");
    std::fs::write(
        &path,
        format!(
            r#"#!/bin/sh
if [ "$(id -u)" = 0 ]; then echo "Refusing to run start-host as root" >&2; exit 1; fi
out="$(dirname "$0")/record"
{{ echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "groups=$(id -G)"
   echo "HOME=$HOME"; echo "USER=$USER"; echo "LOGNAME=$LOGNAME"; echo "LEAK=${{GPUFLEET_AGENT_TOKEN:-}}"
   for a in "$@"; do echo "arg=$a"; done; }} > "$out.tmp" && mv "$out.tmp" "$out"
[ {exit_code} = 0 ] || echo "the code was already used" >&2
exit {exit_code}
"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs the real agent for `hostname` with `--execute-crd`, killed when dropped.
fn agent(
    app: &TestApp,
    hostname: &str,
    token: &str,
    user: &str,
    start_host: &Path,
) -> tokio::process::Child {
    tokio::process::Command::new(agent_program())
        .args(["agent", "--allocator", &app.url, "--hostname", hostname])
        .args(["--gpu", "healthy", "--execute-crd", "--desktop-user", user])
        .arg("--start-host")
        .arg(start_host)
        .env("GPUFLEET_AGENT_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn vm_status(app: &TestApp, hostname: &str) -> (String, Option<String>) {
    let vm = app.state.store.get_vm(hostname).await.unwrap().unwrap();
    (vm.status.as_str().to_string(), vm.status_reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_host_runs_as_the_desktop_user_with_a_clean_environment() {
    if !running_as_root() {
        eprintln!("skipped: switching users needs root (CI runs as root)");
        return;
    }
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_start_host(dir.path(), 0);
    let (hostname, token) = app.register_initializing_vm("desk-ok").await;
    let _agent = agent(&app, &hostname, &token, "nobody", &fake);
    eventually(
        Duration::from_secs(30),
        "the agent reported running",
        || async { vm_status(&app, &hostname).await.0 == "running" },
    )
    .await;
    let (html, seat) = app.claim_seat("desk@example.org", CRD).await;
    let pin = assigned_pin(&html).unwrap();
    let record = dir.path().join("record");
    eventually(Duration::from_secs(30), "start-host ran", || async {
        record.exists()
    })
    .await;
    let got = std::fs::read_to_string(&record).unwrap();
    let nobody = [
        "uid=65534",
        "gid=65534",
        "groups=65534",
        "HOME=/nonexistent",
        "USER=nobody",
        "LOGNAME=nobody",
        "LEAK=",
    ];
    for line in nobody {
        assert!(got.lines().any(|l| l == line), "{line} in:\n{got}");
    }
    for arg in [
        "arg=--code=4/0AbCd-ef_GH".to_string(),
        format!("arg=--pin={pin}"),
        format!("arg=--name={hostname}"),
        "arg=--redirect-url=https://remotedesktop.google.com/_/oauthredirect".to_string(),
    ] {
        assert!(got.lines().any(|l| l == arg), "{arg} in:\n{got}");
    }
    assert_eq!(vm_status(&app, &hostname).await.0, "running");

    // A new command from the seat page runs start-host again with the new code.
    let resp = app
        .client
        .post(app.url("/seat/command"))
        .header("cookie", format!("gpufleet_seat={}", seat.unwrap()))
        .form(&[("crd_command", CRD_2)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually(
        Duration::from_secs(30),
        "start-host ran with the new code",
        || async {
            std::fs::read_to_string(&record).is_ok_and(|r| r.contains("arg=--code=4/0NewCode-42"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_host_or_a_missing_user_makes_the_vm_error_with_the_reason() {
    if !running_as_root() {
        eprintln!("skipped: switching users needs root (CI runs as root)");
        return;
    }
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let failing = fake_start_host(dir.path(), 1);
    let (failing_host, t1) = app.register_initializing_vm("desk-fails").await;
    let (no_user_host, t2) = app.register_initializing_vm("desk-no-user").await;
    let _a = agent(&app, &failing_host, &t1, "nobody", &failing);
    let _b = agent(&app, &no_user_host, &t2, "no-such-desktop-user", &failing);
    eventually(Duration::from_secs(30), "both agents running", || async {
        vm_status(&app, &failing_host).await.0 == "running"
            && vm_status(&app, &no_user_host).await.0 == "running"
    })
    .await;
    let (html, seat) = app.claim_seat("fails@example.org", CRD).await;
    let first = assigned_hostname(&html).unwrap();
    let (html2, _) = app.claim_seat("nouser@example.org", CRD).await;
    let second = assigned_hostname(&html2).unwrap();
    assert_ne!(first, second);
    let expect = |host: &str| {
        if host == failing_host {
            "start-host failed"
        } else {
            "the desktop user no-such-desktop-user does not exist on this VM"
        }
    };
    for host in [&first, &second] {
        eventually(Duration::from_secs(30), "the VM reported error", || async {
            let (status, reason) = vm_status(&app, host).await;
            status == "error" && reason.is_some_and(|r| r.contains(expect(host)))
        })
        .await;
    }
    let (_, reason) = vm_status(&app, &failing_host).await;
    let reason = reason.unwrap();
    assert!(reason.contains("the code was already used"), "{reason}");
    assert!(
        !reason.contains("0AbCd-ef_GH"),
        "the code is masked: {reason}"
    );
    // The participant sees it on their seat page, and heartbeats keep it in error.
    let seat = seat.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = app
        .client
        .get(app.url("/seat"))
        .header("cookie", format!("gpufleet_seat={seat}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"dead\""), "{page}");
    assert!(page.contains(expect(&first)), "{page}");
    assert_eq!(vm_status(&app, &first).await.0, "error");
}
