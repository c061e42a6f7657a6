//! Local compute: each "VM" is a real agent process on this machine, started with its
//! hostname, token and the allocator's URL, exactly as a cloud VM's user_data starts it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::ports::{ComputeProvider, LaunchSpec};

/// Prefix of the instance ids this provider hands out: `local-<pid>`.
const ID_PREFIX: &str = "local-";

#[derive(Debug, Clone)]
pub struct LocalComputeConfig {
    /// The binary that has the `agent` subcommand (normally the running `gpufleet`).
    pub program: PathBuf,
    /// Extra arguments after `agent ...` (e.g. `--gpu healthy` for the demo).
    pub extra_args: Vec<String>,
    /// Where each agent's stdout/stderr go: `<log_dir>/<hostname>.log`.
    pub log_dir: PathBuf,
    /// Kill the agents when this provider is dropped (tests). Otherwise they outlive the
    /// server like cloud VMs do, and reconnect when it comes back.
    pub kill_on_drop: bool,
}

pub struct LocalCompute {
    config: LocalComputeConfig,
    children: Mutex<HashMap<String, Child>>,
}

impl LocalCompute {
    pub fn new(config: LocalComputeConfig) -> Self {
        LocalCompute {
            config,
            children: Mutex::new(HashMap::new()),
        }
    }

    /// Where the agent of `hostname` writes its output.
    pub fn log_path(&self, hostname: &str) -> PathBuf {
        self.config
            .log_dir
            .join(format!("{}.log", file_safe(hostname)))
    }

    /// Where the agent of `hostname` writes the assignment it received (PIN, command).
    pub fn assignment_path(&self, hostname: &str) -> PathBuf {
        self.config
            .log_dir
            .join(format!("{}.assignment.json", file_safe(hostname)))
    }
}

#[async_trait]
impl ComputeProvider for LocalCompute {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String> {
        std::fs::create_dir_all(&self.config.log_dir)
            .with_context(|| format!("creating {}", self.config.log_dir.display()))?;
        let log = std::fs::File::create(self.log_path(&spec.hostname))
            .context("creating the agent's log file")?;
        let log_err = log.try_clone().context("cloning the log handle")?;
        let mut command = Command::new(&self.config.program);
        command
            .arg("agent")
            .args(["--allocator", &spec.allocator_url])
            .args(["--hostname", &spec.hostname])
            .arg("--assignment-file")
            .arg(self.assignment_path(&spec.hostname))
            .args(&self.config.extra_args)
            // The token goes through the environment, not argv (argv is world-readable).
            .env("GPUFLEET_AGENT_TOKEN", spec.token.as_str())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Own process group: a Ctrl-C aimed at the server does not take the VMs down.
            .process_group(0)
            .kill_on_drop(self.config.kill_on_drop);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.config.program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("agent exited at once")))?;
        let id = format!("{ID_PREFIX}{pid}");
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), child);
        Ok(id)
    }

    async fn terminate(&self, instance_id: &str) -> Result<()> {
        let child = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance_id);
        if let Some(mut child) = child {
            child.start_kill().ok();
            tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .context("the agent did not exit after SIGKILL")?
                .context("waiting for the agent")?;
            return Ok(());
        }
        // Started by an earlier server process: find it by pid, but only if it really is
        // our agent (pids get reused).
        let pid: u32 = instance_id
            .strip_prefix(ID_PREFIX)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Error::validation(format!("not a local instance id: {instance_id}")))?;
        if !is_our_agent(pid, &self.config.program) {
            return Ok(()); // already gone
        }
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        if !status.success() && is_our_agent(pid, &self.config.program) {
            return Err(Error::Internal(anyhow::anyhow!(
                "could not kill agent {pid}"
            )));
        }
        for _ in 0..100 {
            if !is_our_agent(pid, &self.config.program) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::Internal(anyhow::anyhow!(
            "agent {pid} still alive after SIGKILL"
        )))
    }
}

fn file_safe(hostname: &str) -> String {
    hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `pid` is a live (not zombie) `... agent ...` process of our program.
fn is_our_agent(pid: u32, program: &std::path::Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    {
        return false;
    }
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let program_name = program.file_name().map(|n| n.as_encoded_bytes());
    let first_matches = args.first().and_then(|a| {
        std::path::Path::new(std::str::from_utf8(a).ok()?)
            .file_name()
            .map(|n| n.as_encoded_bytes())
    }) == program_name;
    first_matches && args.get(1) == Some(&b"agent".as_slice())
}
