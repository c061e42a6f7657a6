//! The VM bootstrap really runs: the rendered user_data, executed as root in a private
//! mount namespace over throwaway copies of /etc, /opt, /home, /usr/local/bin and /var/log
//! (`tests/sandbox/run_user_data.sh`), with stubs for systemctl, apt-get, dpkg, dnf,
//! hostnamectl and curl (which records downloads and lets calls to the test server
//! through). `useradd`, `groupadd` and `usermod` are the real ones, on the copy.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use shared::adapters::aws::ec2::{render_user_data, BootOptions};
use shared::domain::VmToken;
use shared::ports::{LaunchSpec, Market};

use crate::helpers::*;

const STUB: &str = r#"#!/bin/bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
exit 0
"#;

/// curl: calls to the test server go through; downloads are recorded and faked (one whose
/// URL contains `$FAIL_DOWNLOAD`, when set, fails).
const CURL: &str = r#"#!/bin/bash
echo "curl $*" >> "$STUB_LOG"
if [ -n "${FAIL_DOWNLOAD:-}" ]; then case "$*" in *"$FAIL_DOWNLOAD"*) exit 22 ;; esac; fi
for a in "$@"; do case "$a" in http://127.0.0.1:*) exec /usr/bin/curl "$@" ;; esac; done
out=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out=$a; prev=$a; done
[ -n "$out" ] && echo "downloaded by a stub" > "$out"
exit 0
"#;

/// iptables: `-C` (check) finds no rule, so the script inserts it; both are recorded.
const IPTABLES: &str = r#"#!/bin/bash
echo "iptables $*" >> "$STUB_LOG"
[ "$1" = -C ] && exit 1
exit 0
"#;

/// apt-get: installing the CRD package or the desktop leaves what the real one would.
const APT_GET: &str = r#"#!/bin/bash
echo "apt-get $*" >> "$STUB_LOG"
case "$*" in *.deb*)
  mkdir -p /opt/google/chrome-remote-desktop
  printf '#!/bin/sh\n' > /opt/google/chrome-remote-desktop/start-host
  chmod 0755 /opt/google/chrome-remote-desktop/start-host ;;
esac
case "$*" in *xfce4*) printf '#!/bin/sh\n' > "$STUBS/xfce4-session"; chmod 0755 "$STUBS/xfce4-session" ;; esac
exit 0
"#;

fn stubs(dir: &Path) -> PathBuf {
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    for (name, body) in [
        ("systemctl", STUB),
        ("hostnamectl", STUB),
        ("dnf", STUB),
        ("dpkg", STUB),
        ("iptables", IPTABLES),
        ("apt-get", APT_GET),
        ("curl", CURL),
    ] {
        let path = stubs.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(stubs.join("calls.log"), "").unwrap();
    stubs
}

/// Renders user_data for `hostname` (its token, this test server) and writes it out.
fn script(app: &TestApp, dir: &Path, hostname: &str, token: &str) -> PathBuf {
    script_for(app, dir, hostname, token, "participant")
}

fn script_for(app: &TestApp, dir: &Path, hostname: &str, token: &str, user: &str) -> PathBuf {
    let spec = LaunchSpec {
        hostname: hostname.into(),
        token: VmToken::from_plain(token.into()),
        allocator_url: app.url.clone(),
        operation_id: "op".into(),
        client_token: "ct".into(),
        market: Market::OnDemand,
        instance_type: None,
        lease: None,
        image: None,
        pool: None,
    };
    let gz = render_user_data(
        &spec,
        &BootOptions {
            agent_url: "https://example.org/gpufleet",
            vm_log_group: None,
            desktop_user: user,
            in_use_process: Some("sleap-label"),
        },
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let path = dir.join("user_data.sh");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(script: &Path, root: &Path, stubs: &Path, os_id: &str) -> std::process::Output {
    run_with(script, root, stubs, os_id, &[])
}

fn run_with(
    script: &Path,
    root: &Path,
    stubs: &Path,
    os_id: &str,
    args: &[&str],
) -> std::process::Output {
    run_env(script, root, stubs, os_id, args, &[])
}

fn run_env(
    script: &Path,
    root: &Path,
    stubs: &Path,
    os_id: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let harness = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox/run_user_data.sh");
    std::process::Command::new("bash")
        .envs(env.iter().copied())
        .arg(harness)
        .arg(script)
        .arg(root)
        .arg(stubs)
        .arg(os_id)
        .args(args)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_boot_script_prepares_an_ubuntu_vm_for_a_remote_desktop() {
    if !can_sandbox() {
        eprintln!("skipped: the sandbox needs root and mount namespaces (CI has both)");
        return;
    }
    let app = spawn_app().await;
    let (hostname, token) = app.register_initializing_vm("boot-ubuntu").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let stubs = stubs(dir.path());
    let real_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let out = run(
        &script(&app, dir.path(), &hostname, &token),
        &root,
        &stubs,
        "ubuntu",
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The agent's environment: the owner's alone, with the token and the desktop user.
    let env_file = root.join("etc/gpufleet/agent.env");
    assert_eq!(mode(&env_file), 0o600);
    let env = std::fs::read_to_string(&env_file).unwrap();
    for line in [
        format!("GPUFLEET_AGENT_TOKEN={token}"),
        "GPUFLEET_DESKTOP_USER=participant".to_string(),
        "GPUFLEET_WATCH_PROCESS=sleap-label".to_string(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in {env}");
    }
    assert_eq!(mode(&root.join("etc/gpufleet")), 0o700);
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/gpufleet-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/gpufleet agent --execute-crd"));
    assert!(unit.contains("EnvironmentFile=/etc/gpufleet/agent.env"));
    assert!(unit.contains("ExecStartPre=/bin/sh -c 'iptables -C OUTPUT -d 169.254.169.254"));

    // The desktop user, in the chrome-remote-desktop group, with a home and an XFCE session.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("participant:")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("chrome-remote-desktop:") && l.ends_with(":participant")),
        "{group}"
    );
    assert!(root.join("home/participant").is_dir());
    let session = std::fs::read_to_string(root.join("etc/chrome-remote-desktop-session")).unwrap();
    assert_eq!(session.trim(), "exec /usr/bin/xfce4-session");

    // What the image lacked was installed; the agent was enabled.
    let calls = std::fs::read_to_string(stubs.join("calls.log")).unwrap();
    for call in [
        "apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends xfce4 xfce4-terminal dbus-x11",
        "iptables -I OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT",
        "curl -fsSL --retry 5 -o",
        "chrome-remote-desktop_current_amd64.deb",
        "https://example.org/gpufleet",
        "systemctl daemon-reload",
        "systemctl enable --now gpufleet-agent.service",
        &format!("hostnamectl set-hostname {hostname}"),
    ] {
        assert!(calls.contains(call), "{call} in:\n{calls}");
    }
    assert!(calls
        .lines()
        .any(|l| l.starts_with("apt-get") && l.contains(" install ") && l.contains(".deb")));
    assert!(
        root.join("usr-local-bin/gpufleet").exists(),
        "the agent was fetched"
    );
    assert!(root.join("var-log/gpufleet-bootstrap.log").exists());

    // The timings reached the server with the VM's token.
    let vm = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    for stage in ["cloud_init", "desktop", "crd"] {
        let t = vm.metrics.stage(stage);
        assert!(
            t.start.is_some() && t.end.is_some(),
            "{stage}: {:?}",
            vm.metrics
        );
    }
    assert_eq!(vm.status.as_str(), "initializing", "not failed");
    // And the real machine was not touched.
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), real_passwd);
    assert!(!std::fs::read_to_string("/etc/gpufleet/agent.env").is_ok_and(|e| e.contains(&token)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_lacks_the_desktop_fails_fast_naming_what_is_missing() {
    if !can_sandbox() {
        eprintln!("skipped: the sandbox needs root and mount namespaces (CI has both)");
        return;
    }
    let app = spawn_app().await;
    let (hostname, token) = app.register_initializing_vm("boot-al2023").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let stubs = stubs(dir.path());
    // Amazon Linux has no package for Chrome Remote Desktop nor, here, a desktop.
    let out = run(
        &script(&app, dir.path(), &hostname, &token),
        &root,
        &stubs,
        "amzn",
    );
    assert!(!out.status.success(), "the boot stops");
    let vm = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    assert_eq!(vm.status.as_str(), "error");
    let reason = vm.status_reason.unwrap();
    assert!(reason.contains("a desktop (XFCE)"), "{reason}");
    assert!(reason.contains("Chrome Remote Desktop"), "{reason}");
    assert!(reason.contains("infra/bake_image.sh"), "{reason}");
    let calls = std::fs::read_to_string(stubs.join("calls.log")).unwrap();
    assert!(!calls.contains("enable --now gpufleet-agent"), "{calls}");
    assert!(!calls.contains("apt-get"), "{calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baked_image_boots_without_installing_anything() {
    if !can_sandbox() || std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: needs root, mount namespaces and x86_64 (CI has all three)");
        return;
    }
    let app = spawn_app().await;
    let (hostname, token) = app.register_initializing_vm("boot-baked").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let stubs = stubs(dir.path());
    let bake = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/bake_image.sh"
    ));
    let out = run_with(
        bake,
        &root,
        &stubs,
        "ubuntu",
        &["https://example.org/gpufleet"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let baked = std::fs::read_to_string(stubs.join("calls.log")).unwrap();
    for call in [
        "install -y -q --no-install-recommends xfce4",
        "chrome-remote-desktop_current_amd64.deb",
        "amazon-cloudwatch-agent.deb",
        "dpkg -i -E",
    ] {
        assert!(baked.contains(call), "{call} in:\n{baked}");
    }
    assert!(root
        .join("opt/google/chrome-remote-desktop/start-host")
        .exists());
    assert!(root.join("usr-local-bin/gpufleet").exists());

    // The same machine boots as a VM: nothing left to install, the agent is enabled.
    std::fs::write(stubs.join("calls.log"), "").unwrap();
    let out = run(
        &script(&app, dir.path(), &hostname, &token),
        &root,
        &stubs,
        "ubuntu",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let booted = std::fs::read_to_string(stubs.join("calls.log")).unwrap();
    assert!(!booted.contains("apt-get"), "{booted}");
    assert!(!booted.contains("https://example.org/gpufleet"), "{booted}");
    assert!(booted.contains("systemctl enable --now gpufleet-agent.service"));
    // A bake on another system is refused, naming why.
    let other = dir.path().join("other");
    let out = run_with(
        bake,
        &other,
        &stubs,
        "amzn",
        &["https://example.org/gpufleet"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("needs Ubuntu or Debian"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_or_a_privileged_desktop_user_is_reported() {
    if !can_sandbox() {
        eprintln!("skipped: the sandbox needs root and mount namespaces (CI has both)");
        return;
    }
    let app = spawn_app().await;
    // A step that fails unexpectedly (the agent download) is reported with where it stopped.
    let (hostname, token) = app.register_initializing_vm("boot-broken").await;
    let dir = tempfile::tempdir().unwrap();
    let stub_dir = stubs(dir.path());
    let out = run_env(
        &script(&app, dir.path(), &hostname, &token),
        &dir.path().join("root"),
        &stub_dir,
        "ubuntu",
        &[],
        &[("FAIL_DOWNLOAD", "example.org/gpufleet")],
    );
    assert!(!out.status.success());
    let vm = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    assert_eq!(vm.status.as_str(), "error");
    let reason = vm.status_reason.unwrap();
    assert!(
        reason.contains("the boot script failed at line"),
        "{reason}"
    );

    // A system account as the desktop user is refused.
    let (hostname, token) = app.register_initializing_vm("boot-daemon").await;
    let dir = tempfile::tempdir().unwrap();
    let stub_dir = stubs(dir.path());
    let out = run(
        &script_for(&app, dir.path(), &hostname, &token, "daemon"),
        &dir.path().join("root"),
        &stub_dir,
        "ubuntu",
    );
    assert!(!out.status.success());
    let vm = app.state.store.get_vm(&hostname).await.unwrap().unwrap();
    assert!(vm
        .status_reason
        .unwrap_or_default()
        .contains("daemon is a system account or an administrator"));
}
