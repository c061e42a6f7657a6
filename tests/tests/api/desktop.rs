//! The agent starts Chrome Remote Desktop as the desktop user, never as root: a fake
//! `start-host` that refuses root (as the real one does) records who ran it. The real agent
//! runs with `--execute-crd` inside the boot-script sandbox (`tests/sandbox/
//! run_user_data.sh`: a throwaway /etc where a real `useradd` makes the desktop user, no
//! systemd), as root. CI runs as root; elsewhere these say so and skip.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::*;

const CRD_2: &str = "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/0NewCode-42\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)";
const CRD_3: &str = "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/0ThirdCode-7\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)";

/// A start-host stand-in in a directory every user can enter: it refuses root like the real
/// one, records its identity, environment and arguments next to itself (and counts its
/// runs), and registers a host in the user's home as the real one does. With a `fail-once`
/// file beside it, it fails once (as a used code does).
fn fake_start_host(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("start-host");
    std::fs::write(
        &path,
        r#"#!/bin/sh
if [ "$(id -u)" = 0 ]; then echo "Refusing to run start-host as root" >&2; exit 1; fi
here="$(dirname "$0")"
echo run >> "$here/runs"
if [ -e "$here/fail-once" ]; then rm -f "$here/fail-once"; echo "the code was already used" >&2; exit 1; fi
{ echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "groups=$(id -G)"
  echo "HOME=$HOME"; echo "USER=$USER"; echo "LOGNAME=$LOGNAME"; echo "LEAK=${GPUFLEET_AGENT_TOKEN:-}"
  for a in "$@"; do echo "arg=$a"; done; } > "$here/record.tmp" && mv "$here/record.tmp" "$here/record"
mkdir -p "$HOME/.config/chrome-remote-desktop"
echo '{}' > "$HOME/.config/chrome-remote-desktop/host#$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n').json"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Makes the desktop user (if missing) in the sandbox's /etc, then becomes the agent.
const DRIVER: &str = r#"#!/bin/bash
set -euo pipefail
if [ "$DESK_USER" = deskuser ]; then
  getent group chrome-remote-desktop >/dev/null || groupadd --system chrome-remote-desktop
  id -u deskuser >/dev/null 2>&1 || useradd --create-home --shell /bin/bash deskuser
  usermod -a -G chrome-remote-desktop deskuser
fi
exec "$AGENT" agent --allocator "$URL" --hostname "$VM" --gpu healthy --execute-crd \
  --desktop-user "$DESK_USER" --start-host "$FAKE" --state-dir "$STATE"
"#;

struct Sandbox {
    dir: tempfile::TempDir,
    fake: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("stubs")).unwrap();
        std::fs::create_dir_all(dir.path().join("fake")).unwrap();
        std::fs::write(dir.path().join("driver.sh"), DRIVER).unwrap();
        let fake = fake_start_host(&dir.path().join("fake"));
        Sandbox { dir, fake }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("fake").join(name)).unwrap_or_default()
    }

    /// The real agent for `vm`, as root in the sandbox, with `user` as the desktop user.
    fn agent(&self, app: &TestApp, vm: &str, token: &str, user: &str) -> tokio::process::Child {
        let harness = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox/run_user_data.sh");
        tokio::process::Command::new("bash")
            .arg(harness)
            .arg(self.dir.path().join("driver.sh"))
            .arg(self.root())
            .arg(self.dir.path().join("stubs"))
            .arg("ubuntu")
            .env("AGENT", agent_program())
            .env("URL", &app.url)
            .env("VM", vm)
            .env("GPUFLEET_AGENT_TOKEN", token)
            .env("DESK_USER", user)
            .env("FAKE", &self.fake)
            .env("STATE", self.dir.path().join("state"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    fn host_files(&self) -> usize {
        std::fs::read_dir(
            self.root()
                .join("home/deskuser/.config/chrome-remote-desktop"),
        )
        .map(|d| d.flatten().count())
        .unwrap_or(0)
    }
}

async fn vm_status(app: &TestApp, hostname: &str) -> (String, Option<String>) {
    let vm = app.state.store.get_vm(hostname).await.unwrap().unwrap();
    (vm.status.as_str().to_string(), vm.status_reason)
}

async fn send_command(app: &TestApp, seat: &str, command: &str) {
    let resp = app
        .client
        .post(app.url("/seat/command"))
        .header("cookie", format!("gpufleet_seat={seat}"))
        .form(&[("crd_command", command)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_host_runs_as_the_desktop_user_and_survives_agent_restarts() {
    if !can_sandbox() {
        eprintln!("skipped: needs root and mount namespaces (CI has both)");
        return;
    }
    let app = spawn_app().await;
    let sandbox = Sandbox::new();
    let (hostname, token) = app.register_initializing_vm("desk-ok").await;
    let agent = sandbox.agent(&app, &hostname, &token, "deskuser");
    eventually(
        Duration::from_secs(30),
        "the agent reported running",
        || async { vm_status(&app, &hostname).await.0 == "running" },
    )
    .await;
    let (html, seat) = app.claim_seat("desk@example.org", CRD).await;
    let seat = seat.unwrap();
    let pin = assigned_pin(&html).unwrap();
    eventually(Duration::from_secs(30), "start-host ran", || async {
        !sandbox.read("record").is_empty()
    })
    .await;

    // Who ran it: the desktop user, with its own and its supplementary group, a clean env.
    let passwd = std::fs::read_to_string(sandbox.root().join("etc/passwd")).unwrap();
    let user = passwd.lines().find(|l| l.starts_with("deskuser:")).unwrap();
    let ids: Vec<&str> = user.split(':').collect();
    let group = std::fs::read_to_string(sandbox.root().join("etc/group")).unwrap();
    let crd_gid = group
        .lines()
        .find(|l| l.starts_with("chrome-remote-desktop:"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap();
    let got = sandbox.read("record");
    for line in [
        format!("uid={}", ids[2]),
        format!("gid={}", ids[3]),
        format!("groups={} {crd_gid}", ids[3]),
        "HOME=/home/deskuser".to_string(),
        "USER=deskuser".to_string(),
        "LOGNAME=deskuser".to_string(),
        "LEAK=".to_string(),
        "arg=--code=4/0AbCd-ef_GH".to_string(),
        format!("arg=--pin={pin}"),
        format!("arg=--name={hostname}"),
        "arg=--redirect-url=https://remotedesktop.google.com/_/oauthredirect".to_string(),
    ] {
        assert!(got.lines().any(|l| l == line), "{line} in:\n{got}");
    }
    assert_eq!(sandbox.host_files(), 1);
    assert_eq!(vm_status(&app, &hostname).await.0, "running");

    // A new command re-registers: the new host replaces the old one.
    send_command(&app, &seat, CRD_2).await;
    eventually(
        Duration::from_secs(30),
        "start-host ran with the new code",
        || async { sandbox.read("record").contains("arg=--code=4/0NewCode-42") },
    )
    .await;
    eventually(Duration::from_secs(10), "one host registration", || async {
        sandbox.host_files() == 1
    })
    .await;

    // The agent restarts (crash, reboot): it does not run the used code again.
    drop(agent);
    let runs = sandbox.read("runs").lines().count();
    assert_eq!(runs, 2);
    let before = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    let _agent = sandbox.agent(&app, &hostname, &token, "deskuser");
    eventually(
        Duration::from_secs(30),
        "the restarted agent called",
        || async {
            let vm = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
            vm.last_seen_at > before.last_seen_at
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sandbox.read("runs").lines().count(),
        2,
        "no rerun of a used code"
    );
    assert_eq!(vm_status(&app, &hostname).await.0, "running");
    assert_eq!(sandbox.host_files(), 1, "the working registration is kept");

    // A failing command leaves the working registration; the VM says why; the next good
    // command brings it back to running.
    std::fs::write(sandbox.dir.path().join("fake/fail-once"), "").unwrap();
    send_command(&app, &seat, CRD_3).await;
    eventually(
        Duration::from_secs(30),
        "the VM reported the failure",
        || async {
            let (status, reason) = vm_status(&app, &hostname).await;
            status == "error" && reason.is_some_and(|r| r.contains("the code was already used"))
        },
    )
    .await;
    let (_, reason) = vm_status(&app, &hostname).await;
    assert!(
        !reason.unwrap().contains("0ThirdCode-7"),
        "the code is masked"
    );
    assert_eq!(sandbox.host_files(), 1);
    send_command(&app, &seat, CRD).await;
    eventually(Duration::from_secs(30), "the VM is back", || async {
        vm_status(&app, &hostname).await.0 == "running"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_or_privileged_desktop_user_makes_the_vm_error_with_the_reason() {
    if !can_sandbox() {
        eprintln!("skipped: needs root and mount namespaces (CI has both)");
        return;
    }
    let app = spawn_app().await;
    let sandbox = Sandbox::new();
    let mut agents = Vec::new();
    let cases = [
        (
            "desk-no-user",
            "no-such-desktop-user",
            "does not exist on this VM",
        ),
        ("desk-root", "root", "is a system account"),
    ];
    // One after the other: the first run prepares the sandbox's throwaway /etc.
    for (vm, user, _) in cases {
        let (hostname, token) = app.register_initializing_vm(vm).await;
        agents.push(sandbox.agent(&app, &hostname, &token, user));
        eventually(Duration::from_secs(30), "the agent is running", || async {
            vm_status(&app, vm).await.0 == "running"
        })
        .await;
    }
    let mut seats = Vec::new();
    for i in 0..2 {
        let (_, seat) = app.claim_seat(&format!("user{i}@example.org"), CRD).await;
        seats.push(seat.unwrap());
    }
    for (vm, _, why) in cases {
        eventually(Duration::from_secs(30), "the VM reported error", || async {
            let (status, reason) = vm_status(&app, vm).await;
            status == "error" && reason.is_some_and(|r| r.contains(why))
        })
        .await;
    }
    assert!(sandbox.read("runs").is_empty(), "start-host never ran");
    // The participant sees why on their seat page.
    let page = app
        .client
        .get(app.url("/seat"))
        .header("cookie", format!("gpufleet_seat={}", seats[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"dead\""), "{page}");
    assert!(cases.iter().any(|(_, _, why)| page.contains(why)), "{page}");
}
