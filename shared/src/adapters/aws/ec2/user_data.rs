//! The user_data EC2 machines boot with, rendered from the templates beside this file:
//! `user_data.sh` for the fleet's VMs (the agent and its settings) and
//! `instance_user_data.sh` for instances of the offers API (SSH key, container, start-up
//! script). Every value is checked against a safe set, or passed as base64, before it goes
//! into a script; the result is gzipped (cloud-init unpacks it) and held to EC2's limit.

use std::io::Write as _;

use base64::Engine as _;

use super::USER_DATA_LIMIT;
use crate::error::{Error, Result};
use crate::ports::{CreateInstanceSpec, LaunchSpec};

/// The bootstrap script template, rendered by `render_user_data`.
pub(super) const USER_DATA_TEMPLATE: &str = include_str!("user_data.sh");

/// Boot options that go into every VM's user_data.
#[derive(Debug, Clone, Copy)]
pub struct BootOptions<'a> {
    pub agent_url: &'a str,
    pub vm_log_group: Option<&'a str>,
    pub desktop_user: &'a str,
    pub in_use_process: Option<&'a str>,
}

pub use crate::domain::crd::valid_user_name as safe_user_name;

/// A process name as the kernel keeps it (`comm`: at most 15 bytes), from a safe set.
pub fn safe_process_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// CloudWatch Logs group names (their documented character set), safe inside the script.
pub(super) fn safe_log_group(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./#".contains(c))
}

/// URLs we are willing to put into a shell script: no quotes, spaces, `$`, backticks, `;`.
pub(super) fn safe_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/?=&%+".contains(c))
}

/// Renders the bootstrap script for one VM, refusing any value that could escape it, and
/// gzips it (cloud-init unpacks gzip) so it stays far below EC2's 16 KB limit.
pub fn render_user_data(spec: &LaunchSpec, boot: &BootOptions<'_>) -> Result<Vec<u8>> {
    let BootOptions {
        agent_url,
        vm_log_group,
        desktop_user,
        in_use_process,
    } = *boot;
    let hostname_ok = !spec.hostname.is_empty()
        && spec.hostname.len() <= 63
        && spec
            .hostname
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let token_ok = !spec.token.as_str().is_empty()
        && spec.token.as_str().chars().all(|c| c.is_ascii_hexdigit());
    let log_group_ok = vm_log_group.is_none_or(safe_log_group);
    if !hostname_ok
        || !token_ok
        || !log_group_ok
        || !safe_user_name(desktop_user)
        || !in_use_process.is_none_or(safe_process_name)
        || !safe_url(&spec.allocator_url)
        || !safe_url(agent_url)
    {
        return Err(Error::validation(
            "refusing to render user_data: a hostname, token, URL, user or process name has characters outside its allowed set",
        ));
    }
    let script = USER_DATA_TEMPLATE
        .replace("__API_URL__", spec.allocator_url.trim_end_matches('/'))
        .replace("__HOSTNAME__", &spec.hostname)
        .replace("__TOKEN__", spec.token.as_str())
        .replace("__AGENT_URL__", agent_url)
        .replace("__LOG_GROUP__", vm_log_group.unwrap_or(""))
        .replace(
            "__LOG_STREAM__",
            &crate::domain::TokenHash::of(spec.token.as_str()).log_stream(&spec.hostname),
        )
        .replace("__DESKTOP_USER__", desktop_user)
        .replace("__IN_USE_PROCESS__", in_use_process.unwrap_or(""));
    let bytes = gzip(&script)?;
    if bytes.len() > USER_DATA_LIMIT {
        return Err(Error::Internal(anyhow::anyhow!(
            "user_data is {} bytes, over EC2's {USER_DATA_LIMIT}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The bootstrap template of instances, rendered by `render_instance_user_data`.
pub(super) const INSTANCE_USER_DATA_TEMPLATE: &str = include_str!("instance_user_data.sh");

/// Renders an instance's bootstrap: the caller's values only as base64 in single quotes.
pub fn render_instance_user_data(spec: &CreateInstanceSpec, ssh_user: &str) -> Result<Vec<u8>> {
    let user_ok = !ssh_user.is_empty()
        && ssh_user.len() <= 32
        && ssh_user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && ssh_user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !user_ok {
        return Err(Error::validation(
            "the SSH login user must match [a-z_][a-z0-9_-]*",
        ));
    }
    let b64 = |v: Option<&String>| {
        base64::engine::general_purpose::STANDARD.encode(v.map(String::as_bytes).unwrap_or(b""))
    };
    let script = INSTANCE_USER_DATA_TEMPLATE
        .replace("__SSH_USER__", ssh_user)
        .replace("__SSH_KEY_B64__", &b64(spec.request.ssh_key.as_ref()))
        .replace("__IMAGE_B64__", &b64(spec.request.image.as_ref()))
        .replace(
            "__ONSTART_B64__",
            &b64(spec.request.onstart_script.as_ref()),
        );
    let bytes = gzip(&script)?;
    if bytes.len() > USER_DATA_LIMIT {
        return Err(Error::validation(format!(
            "the instance's user_data would be {} bytes, over EC2's {USER_DATA_LIMIT}; shorten onstart_script",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn gzip(script: &str) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(script.as_bytes())
        .and_then(|()| gz.finish())
        .map_err(|e| Error::Internal(anyhow::anyhow!("gzip: {e}")))
}
