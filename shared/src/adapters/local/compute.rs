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

use crate::adapters::clock::SystemClock;
use crate::error::{Error, Result};
use crate::ports::{
    Clock, ComputeProvider, Instance, InstanceState, LaunchError, LaunchSpec, MachineTags,
};

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
    /// Each local VM's working directory (the cloud VM's desktop user's home): the agent
    /// collects from `<work_root>/<hostname>/`.
    pub work_root: PathBuf,
    /// Kill the agents when this provider is dropped (tests). Otherwise they outlive the
    /// server like cloud VMs do, and reconnect when it comes back.
    pub kill_on_drop: bool,
    /// The allocator URL the agents are given. Agents started with it are this deployment's
    /// machines (the local counterpart of the EC2 deployment tag), including agents started
    /// by an earlier server process.
    pub allocator_url: String,
}

/// One agent process this server started.
struct Agent {
    child: Child,
    launched_at: i64,
}

pub struct LocalCompute {
    config: LocalComputeConfig,
    agents: Mutex<HashMap<String, Agent>>,
}

impl LocalCompute {
    pub fn new(config: LocalComputeConfig) -> Self {
        LocalCompute {
            config,
            agents: Mutex::new(HashMap::new()),
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
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, LaunchError> {
        // Like a bad AMI on EC2: no retry can fix a missing agent program.
        if !self.config.program.is_file() {
            return Err(LaunchError::Rejected(format!(
                "the agent program {} does not exist",
                self.config.program.display()
            )));
        }
        self.start_agent(spec).map_err(LaunchError::Other)
    }

    async fn find_by_hostname(&self, hostname: &str) -> Result<Option<Instance>> {
        Ok(self
            .list_machines()
            .await?
            .into_iter()
            .find(|i| i.hostname.as_deref() == Some(hostname)))
    }

    async fn list_machines(&self) -> Result<Vec<Instance>> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        // Reap agents that exited, so they do not linger as zombies.
        for agent in agents.values_mut() {
            let _ = agent.child.try_wait();
        }
        Ok(
            scan_agents(&self.config.program, &self.config.allocator_url)
                .into_iter()
                .map(|(pid, hostname)| {
                    let id = format!("{ID_PREFIX}{pid}");
                    let launched_at = agents.get(&id).map_or(0, |a| a.launched_at);
                    Instance {
                        id,
                        hostname: Some(hostname),
                        state: InstanceState::Running,
                        launched_at,
                        address: Some("127.0.0.1".into()),
                    }
                })
                .collect(),
        )
    }

    async fn terminate(&self, instance_ids: &[String]) -> Result<Vec<String>> {
        let mut confirmed = Vec::new();
        for id in instance_ids {
            match self.stop_agent(id).await {
                Ok(()) => confirmed.push(id.clone()),
                Err(e) => tracing::error!(instance = %id, error = ?e, "agent did not stop"),
            }
        }
        Ok(confirmed)
    }

    /// Local processes carry no tags: a host's pool lives in the store alone.
    fn tags(&self) -> Option<&dyn MachineTags> {
        None
    }
}

impl LocalCompute {
    fn start_agent(&self, spec: &LaunchSpec) -> Result<String> {
        std::fs::create_dir_all(&self.config.log_dir)
            .with_context(|| format!("creating {}", self.config.log_dir.display()))?;
        let log = std::fs::File::create(self.log_path(&spec.hostname))
            .context("creating the agent's log file")?;
        let log_err = log.try_clone().context("cloning the log handle")?;
        let work_dir = self.config.work_root.join(file_safe(&spec.hostname));
        std::fs::create_dir_all(&work_dir)
            .with_context(|| format!("creating {}", work_dir.display()))?;
        let mut command = Command::new(&self.config.program);
        command
            .arg("agent")
            .args(["--allocator", &spec.allocator_url])
            .args(["--hostname", &spec.hostname])
            .arg("--assignment-file")
            .arg(self.assignment_path(&spec.hostname))
            .arg("--work-dir")
            .arg(&work_dir)
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
        self.agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.clone(),
                Agent {
                    child,
                    launched_at: SystemClock.now_millis(),
                },
            );
        Ok(id)
    }

    async fn stop_agent(&self, instance_id: &str) -> Result<()> {
        let agent = self
            .agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance_id);
        if let Some(Agent { mut child, .. }) = agent {
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

/// The arguments of a live (not zombie) `<program> agent ...` process, if `pid` is one.
fn agent_args(pid: u32, program: &std::path::Path) -> Option<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    {
        return None;
    }
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let name = std::path::Path::new(args.first()?).file_name()?;
    (Some(name) == program.file_name() && args.get(1).map(String::as_str) == Some("agent"))
        .then_some(args)
}

fn is_our_agent(pid: u32, program: &std::path::Path) -> bool {
    agent_args(pid, program).is_some()
}

/// Every live agent of `program` started for `allocator_url`: (pid, hostname).
fn scan_agents(program: &std::path::Path, allocator_url: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let flag = |args: &[String], name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let args = agent_args(pid, program)?;
            if flag(&args, "--allocator").as_deref() != Some(allocator_url) {
                return None;
            }
            Some((pid, flag(&args, "--hostname")?))
        })
        .collect()
}
