//! Running Chrome Remote Desktop's `start-host` as the participant's desktop user.
//!
//! `start-host` refuses to run as root (it checks `geteuid() == 0`), and the remote desktop
//! session belongs to an unprivileged user whose home is the participant's working
//! directory. The agent (a root service) resolves that user, then runs the validated argv
//! through `setpriv` with the user's uid, gid and supplementary groups (`--init-groups`: the
//! `chrome-remote-desktop` group among them) and a clean environment (`HOME`, `USER`,
//! `LOGNAME`, `PATH` only): no shell anywhere. Then it makes sure the user's host service
//! runs (`chrome-remote-desktop@<user>`, where systemd manages the machine). Root, system
//! accounts and administrators are refused as desktop users.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};
use shared::domain::crd::valid_user_name as valid_name;

/// The user a remote-desktop session runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks the user up in the system's user database (`getent passwd`).
pub fn resolve(name: &str) -> anyhow::Result<DesktopUser> {
    if !valid_name(name) {
        bail!("the desktop user name {name:?} is not a valid user name");
    }
    let out = std::process::Command::new("getent")
        .args(["passwd", name])
        .output()
        .context("running getent")?;
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim_end().split(':').collect();
    let user = match (out.status.success(), fields.as_slice()) {
        (true, [user, _, uid, gid, _, home, _]) if *user == name => DesktopUser {
            name: name.to_string(),
            uid: uid.parse().context("the user's uid")?,
            gid: gid.parse().context("the user's gid")?,
            home: PathBuf::from(home),
        },
        _ => bail!("the desktop user {name} does not exist on this VM"),
    };
    // The participant gets this account's session: never root, a system account or an
    // administrator (on the Deep Learning AMIs `ubuntu` has password-less sudo).
    if user.uid < FIRST_REGULAR_UID {
        bail!(
            "the desktop user {name} is a system account (uid {}); use an unprivileged user",
            user.uid
        );
    }
    let groups = std::process::Command::new("id")
        .args(["-Gn", name])
        .output()
        .context("running id")?;
    let groups = String::from_utf8_lossy(&groups.stdout);
    if let Some(admin) = groups.split_whitespace().find(|g| ADMIN_GROUPS.contains(g)) {
        bail!("the desktop user {name} is in the administrators' group {admin}; use an unprivileged user");
    }
    Ok(user)
}

/// The first uid of regular users (`UID_MIN` on Debian, Ubuntu and Amazon Linux).
const FIRST_REGULAR_UID: u32 = 1000;
/// Groups whose members can become root.
const ADMIN_GROUPS: [&str; 4] = ["sudo", "admin", "wheel", "root"];

/// Whether systemd manages this machine (it does on a cloud VM, not in a container).
fn has_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

async fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed: {}",
            args.join(" "),
            last_line(&out.stderr)
        );
    }
    Ok(())
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect()
}

/// The host registrations an earlier command left (`~/.config/chrome-remote-desktop/
/// host#*.json`): regular files of that name; the directories must not be symlinks. Only
/// listed here (as root); they are removed as the user (see `start_host_as`).
fn earlier_hosts(user: &DesktopUser) -> Vec<PathBuf> {
    let config = user.home.join(".config");
    let dir = config.join("chrome-remote-desktop");
    for step in [&config, &dir] {
        if !step
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_dir())
        {
            return Vec::new();
        }
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("host#")
                && name.ends_with(".json")
                && entry
                    .path()
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_file())
        })
        .map(|entry| entry.path())
        .collect()
}

/// `program args…` as `user`: their uid, gid and groups (`setpriv --init-groups`), their
/// home as the directory, and a clean environment. No shell.
fn as_user(user: &DesktopUser, program: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("setpriv");
    command
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(program)
        .env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir(if user.home.is_dir() {
            user.home.as_path()
        } else {
            Path::new("/")
        })
        .stdin(Stdio::null());
    command
}

/// Runs `argv` (start-host and its arguments) as `user`, with `secrets` masked out of any
/// error text. Only once it succeeded are the host registrations of earlier commands
/// removed (as the user, so a link they planted cannot aim root at another file) and the
/// user's host service (re)started, where systemd runs: a failed command leaves a working
/// desktop as it was.
pub async fn start_host_as(
    user: &DesktopUser,
    argv: &[String],
    secrets: &[&str],
) -> anyhow::Result<()> {
    let earlier = earlier_hosts(user);
    let (program, rest) = argv.split_first().context("empty start-host argv")?;
    let out = as_user(user, program)
        .args(rest)
        .env("DISPLAY", "")
        .output()
        .await
        .context("running setpriv (util-linux) to start the host as the desktop user")?;
    if !out.status.success() {
        let mut why = last_line(&out.stderr);
        if why.is_empty() {
            why = last_line(&out.stdout);
        }
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            why = why.replace(secret, "****");
        }
        bail!(
            "Chrome Remote Desktop start-host failed ({}): {why}",
            out.status
        );
    }
    if !earlier.is_empty() {
        let removed = as_user(user, "rm")
            .arg("-f")
            .arg("--")
            .args(&earlier)
            .status()
            .await
            .context("removing earlier host registrations")?;
        if !removed.success() {
            bail!("could not remove the earlier host registrations");
        }
    }
    if has_systemd() {
        let service = format!("chrome-remote-desktop@{}", user.name);
        systemctl(&["enable", &service]).await?;
        systemctl(&["restart", &service]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked_before_any_command() {
        for ok in ["participant", "_crd", "user-1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Root", "-x", "a b", "a;b", "../x", &"a".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(resolve("no such user").is_err());
    }

    #[test]
    fn only_unprivileged_users_resolve() {
        let nobody = resolve("nobody").unwrap();
        assert!(nobody.uid >= FIRST_REGULAR_UID);
        for (name, why) in [
            ("root", "system account"),
            ("daemon", "system account"),
            ("gpufleet-no-such-user", "does not exist"),
        ] {
            let err = resolve(name).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
        }
    }
}
