//! The `local` provider of the offers API, for local mode: one offer (this machine) and
//! instances that are real child processes of the server, so the whole lifecycle (create,
//! stop = SIGSTOP, start = SIGCONT, destroy = kill, verified) can be tried without a cloud
//! account. A local instance is a placeholder process: it does not run the image or the
//! start-up script (running callers' scripts on the operator's laptop would be a hazard).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Mutex;

use crate::domain::instances::{InstanceStatus, ProviderInstance};
use crate::domain::offers::{Offer, OfferQuery};
use crate::error::{Error, Result};
use crate::ports::{CreateInstanceSpec, GpuCloud, LaunchError};

pub const PROVIDER: &str = "local";
const OFFER_ID: &str = "this-machine";

struct Local {
    record_id: String,
    pid: u32,
    /// Our child; `None` for a process an earlier server started (adopted at start).
    child: Option<tokio::process::Child>,
    stopped: bool,
    launched_at: i64,
}

/// Environment variables that mark an instance process as ours, so a server that restarts
/// after a crash finds (and can end) the instances the dead one started.
const OWNER_ENV: &str = "GPUFLEET_LOCAL_CLOUD_OWNER";
const RECORD_ENV: &str = "GPUFLEET_LOCAL_CLOUD_RECORD";

#[derive(Default)]
pub struct LocalCloud {
    instances: Mutex<HashMap<String, Local>>,
    /// Whose instances these are (the data directory); empty: this process's only.
    owner: String,
}

impl LocalCloud {
    /// Instances owned by `owner` (e.g. the data directory's path), including the live ones
    /// an earlier process with the same owner left behind.
    pub fn new(owner: impl Into<String>) -> Self {
        let owner = owner.into();
        let adopted = scan_owned(&owner)
            .into_iter()
            .map(|(pid, record_id)| {
                (
                    format!("local-{pid}"),
                    Local {
                        record_id,
                        pid,
                        child: None,
                        stopped: false,
                        launched_at: 0,
                    },
                )
            })
            .collect();
        LocalCloud {
            instances: Mutex::new(adopted),
            owner,
        }
    }
}

/// The value of `name` in a live process's environment, if it is there.
fn process_env(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
}

/// Live (not zombie) processes carrying `owner`'s mark: (pid, record id).
fn scan_owned(owner: &str) -> Vec<(u32, String)> {
    if owner.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_alive(*pid))
        .filter(|pid| process_env(*pid, OWNER_ENV).as_deref() == Some(owner))
        .filter_map(|pid| Some((pid, process_env(pid, RECORD_ENV)?)))
        .collect()
}

/// Running or stopped, not a zombie.
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map_err(|e| Error::Internal(anyhow::anyhow!("kill {sig}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Internal(anyhow::anyhow!("kill {sig} {pid} failed")))
    }
}

fn this_machine() -> Offer {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let ram_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| (kb / 1024.0 / 1024.0).round());
    // GPUs as nvidia-smi lists them (none on most laptops).
    let gpus: Vec<String> = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let model = gpus
        .first()
        .and_then(|l| l.split(':').nth(1))
        .map(|m| {
            m.split('(')
                .next()
                .unwrap_or(m)
                .trim()
                .trim_start_matches("NVIDIA ")
                .to_string()
        })
        .unwrap_or_else(|| "none".into());
    Offer {
        id: format!("{PROVIDER}:{OFFER_ID}"),
        provider: PROVIDER.into(),
        provider_id: OFFER_ID.into(),
        name: "This machine (local mode)".into(),
        status: "available".into(),
        gpu_model: model,
        gpu_count: gpus.len() as u32,
        gpu_memory_gb: 0.0,
        cpu_count: cpus,
        ram_gb,
        storage_gb: 0.0,
        price_per_hour: 0.0,
        region: "local".into(),
        provider_data: json!({"note": "instances are placeholder processes on this machine"}),
    }
}

#[async_trait]
impl GpuCloud for LocalCloud {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn search_offers(&self, _query: &OfferQuery) -> Result<Vec<Offer>> {
        Ok(vec![this_machine()])
    }

    async fn offer(&self, provider_id: &str) -> Result<Option<Offer>> {
        Ok((provider_id == OFFER_ID).then(this_machine))
    }

    async fn create(&self, spec: &CreateInstanceSpec) -> Result<ProviderInstance, LaunchError> {
        let mut instances = self.instances.lock().await;
        if let Some((id, l)) = instances
            .iter()
            .find(|(_, l)| l.record_id == spec.record_id)
        {
            return Ok(ProviderInstance {
                provider_id: id.clone(),
                record_id: Some(l.record_id.clone()),
                status: Some(InstanceStatus::Running),
                launched_at: l.launched_at,
                ..ProviderInstance::default()
            });
        }
        let child = tokio::process::Command::new("sleep")
            .arg("2147483647")
            .env(OWNER_ENV, &self.owner)
            .env(RECORD_ENV, &spec.record_id)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LaunchError::Other(Error::Internal(anyhow::anyhow!("spawn: {e}"))))?;
        let pid = child.id().unwrap_or_default();
        let id = format!("local-{pid}");
        let launched_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        instances.insert(
            id.clone(),
            Local {
                record_id: spec.record_id.clone(),
                pid,
                child: Some(child),
                stopped: false,
                launched_at,
            },
        );
        Ok(ProviderInstance {
            provider_id: id,
            record_id: Some(spec.record_id.clone()),
            status: Some(InstanceStatus::Running),
            launched_at,
            public_ip: Some("127.0.0.1".into()),
            ssh_host: Some("127.0.0.1".into()),
            ssh_port: None,
        })
    }

    async fn show(&self, provider_id: &str) -> Result<Option<ProviderInstance>> {
        let mut instances = self.instances.lock().await;
        let Some(l) = instances.get_mut(provider_id) else {
            return Ok(None);
        };
        let exited = match l.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            // Adopted: alive only while the pid still carries our mark (pids get reused).
            None => {
                !is_alive(l.pid)
                    || process_env(l.pid, OWNER_ENV).as_deref() != Some(self.owner.as_str())
            }
        };
        Ok(Some(ProviderInstance {
            provider_id: provider_id.to_string(),
            record_id: Some(l.record_id.clone()),
            status: Some(if exited {
                InstanceStatus::Destroyed
            } else if l.stopped {
                InstanceStatus::Stopped
            } else {
                InstanceStatus::Running
            }),
            launched_at: l.launched_at,
            public_ip: Some("127.0.0.1".into()),
            ssh_host: Some("127.0.0.1".into()),
            ssh_port: None,
        }))
    }

    async fn start(&self, provider_id: &str) -> Result<()> {
        let mut instances = self.instances.lock().await;
        let l = instances
            .get_mut(provider_id)
            .ok_or_else(|| Error::NotFound(format!("local instance {provider_id}")))?;
        signal(l.pid, "-CONT")?;
        l.stopped = false;
        Ok(())
    }

    async fn stop(&self, provider_id: &str) -> Result<()> {
        let mut instances = self.instances.lock().await;
        let l = instances
            .get_mut(provider_id)
            .ok_or_else(|| Error::NotFound(format!("local instance {provider_id}")))?;
        signal(l.pid, "-STOP")?;
        l.stopped = true;
        Ok(())
    }

    async fn destroy(&self, provider_id: &str) -> Result<bool> {
        let mut instances = self.instances.lock().await;
        let Some(mut l) = instances.remove(provider_id) else {
            return Ok(true);
        };
        // SIGKILL works on a stopped process too; wait() confirms it is gone.
        if let Some(child) = l.child.as_mut() {
            let _ = child.start_kill();
            child
                .wait()
                .await
                .map_err(|e| Error::Internal(anyhow::anyhow!("waiting for {provider_id}: {e}")))?;
            return Ok(true);
        }
        // Adopted from an earlier process: kill it if it still carries our mark (pids get
        // reused), then confirm it is gone.
        if process_env(l.pid, OWNER_ENV).as_deref() == Some(self.owner.as_str()) {
            let _ = signal(l.pid, "-KILL");
        }
        for _ in 0..100 {
            if !is_alive(l.pid) || process_env(l.pid, OWNER_ENV).is_none() {
                return Ok(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        instances.insert(provider_id.to_string(), l);
        Ok(false)
    }

    async fn list_owned(&self) -> Result<Vec<ProviderInstance>> {
        let ids: Vec<String> = self.instances.lock().await.keys().cloned().collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(i) = self.show(&id).await? {
                out.push(i);
            }
        }
        Ok(out)
    }
}
