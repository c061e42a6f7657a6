//! Running Chrome Remote Desktop's `start-host` as the participant's desktop user.
//!
//! `start-host` refuses to run as root (it checks `geteuid() == 0`), and the remote desktop
//! session belongs to an unprivileged user whose home is the participant's working
//! directory. The agent (a root service) resolves that user, then runs the validated argv
//! through `setpriv` with the user's uid, gid and supplementary groups (`--init-groups`: the
//! `chrome-remote-desktop` group among them) and a clean environment (`HOME`, `USER`,
//! `LOGNAME`, `PATH` only): no shell anywhere. Then it makes sure the user's host service
//! runs (`chrome-remote-desktop@<user>`, where systemd manages the machine).

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
    match (out.status.success(), fields.as_slice()) {
        (true, [user, _, uid, gid, _, home, _]) if *user == name => Ok(DesktopUser {
            name: name.to_string(),
            uid: uid.parse().context("the user's uid")?,
            gid: gid.parse().context("the user's gid")?,
            home: PathBuf::from(home),
        }),
        _ => bail!("the desktop user {name} does not exist on this VM"),
    }
}

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

/// Removes the host registrations an earlier command left (`~/.config/chrome-remote-desktop/
/// host#*.json`), so a new command replaces them instead of adding a second host. Only
/// regular files of that name are removed; symlinks are not followed.
fn forget_earlier_hosts(user: &DesktopUser) -> anyhow::Result<usize> {
    let config = user.home.join(".config");
    let dir = config.join("chrome-remote-desktop");
    // The user owns these directories: never follow a link they put there.
    for step in [&config, &dir] {
        if !step
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_dir())
        {
            return Ok(0);
        }
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_file = entry
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_file());
        if is_file && name.starts_with("host#") && name.ends_with(".json") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Runs `argv` (start-host and its arguments) as `user`, with `secrets` masked out of any
/// error text; then starts the user's host service where systemd runs.
pub async fn start_host_as(
    user: &DesktopUser,
    argv: &[String],
    secrets: &[&str],
) -> anyhow::Result<()> {
    let service = format!("chrome-remote-desktop@{}", user.name);
    let systemd = has_systemd();
    if systemd {
        // A host already registered by an earlier command is replaced, not doubled.
        let _ = systemctl(&["stop", &service]).await;
    }
    forget_earlier_hosts(user)?;
    let (program, rest) = argv.split_first().context("empty start-host argv")?;
    let out = tokio::process::Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(program)
        .args(rest)
        .env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("DISPLAY", "")
        .current_dir(if user.home.is_dir() {
            user.home.as_path()
        } else {
            Path::new("/")
        })
        .stdin(Stdio::null())
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
    if systemd {
        systemctl(&["enable", "--now", &service]).await?;
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
    fn an_existing_user_resolves() {
        let root = resolve("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(resolve("gpufleet-no-such-user")
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }
}
