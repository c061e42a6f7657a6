//! What EC2 launches need from the environment, read once at start with errors that name
//! the variable; values that go into user_data are checked here already.

use super::user_data::{safe_log_group, safe_process_name, safe_url, safe_user_name, BootOptions};
use crate::config::ConfigError;

/// Launch options, from the environment.
#[derive(Debug, Clone)]
pub struct Ec2Config {
    /// `GPUFLEET_DEPLOYMENT`
    pub deployment: String,
    /// `GPUFLEET_AMI` (required)
    pub ami: String,
    /// `GPUFLEET_INSTANCE_TYPE` (default g4dn.xlarge)
    pub instance_type: String,
    /// `GPUFLEET_SUBNET_ID`
    pub subnet_id: Option<String>,
    /// `GPUFLEET_SECURITY_GROUP_IDS`, comma-separated
    pub security_group_ids: Vec<String>,
    /// `GPUFLEET_KEY_NAME`
    pub key_name: Option<String>,
    /// `GPUFLEET_INSTANCE_PROFILE` (name)
    pub instance_profile: Option<String>,
    /// `GPUFLEET_VM_LOG_GROUP`: the CloudWatch Logs group the VMs ship their logs to (one
    /// stream per hostname); unset, VMs push logs through the API only.
    pub vm_log_group: Option<String>,
    /// `GPUFLEET_AGENT_URL`: where user_data downloads the agent when the AMI lacks it.
    pub agent_url: String,
    /// `GPUFLEET_DESKTOP_USER` (default `participant`): the unprivileged user the remote
    /// desktop runs as; its home is the participant's working directory.
    pub desktop_user: String,
    /// `GPUFLEET_IN_USE_PROCESS`: the process name (as in `/proc/<pid>/comm`) whose running
    /// means the VM is in use, e.g. the workshop's research program; unset, none.
    pub in_use_process: Option<String>,
}

impl Ec2Config {
    pub fn boot_options(&self) -> BootOptions<'_> {
        BootOptions {
            agent_url: &self.agent_url,
            vm_log_group: self.vm_log_group.as_deref(),
            desktop_user: &self.desktop_user,
            in_use_process: self.in_use_process.as_deref(),
        }
    }
}

impl Ec2Config {
    /// For functions that list and terminate this deployment's machines but never launch.
    pub fn terminate_only(deployment: &str) -> Self {
        Ec2Config {
            deployment: deployment.to_string(),
            ami: String::new(),
            instance_type: String::new(),
            subnet_id: None,
            security_group_ids: Vec::new(),
            key_name: None,
            instance_profile: None,
            vm_log_group: None,
            agent_url: String::new(),
            desktop_user: "participant".into(),
            in_use_process: None,
        }
    }

    pub fn from_env(deployment: &str) -> std::result::Result<Self, ConfigError> {
        Self::from_lookup(deployment, |k| std::env::var(k).ok())
    }

    pub fn from_lookup(
        deployment: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let agent_url =
            get("GPUFLEET_AGENT_URL").ok_or(ConfigError::Missing("GPUFLEET_AGENT_URL"))?;
        if !safe_url(&agent_url) {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_AGENT_URL",
                value: agent_url,
                reason: "must be an http(s) URL of letters, digits and -._~:/?=&%+".into(),
            });
        }
        let vm_log_group = get("GPUFLEET_VM_LOG_GROUP");
        if let Some(group) = &vm_log_group {
            if !safe_log_group(group) {
                return Err(ConfigError::Invalid {
                    name: "GPUFLEET_VM_LOG_GROUP",
                    value: group.clone(),
                    reason: "must be 1-512 of letters, digits and _-./#".into(),
                });
            }
        }
        let desktop_user = get("GPUFLEET_DESKTOP_USER").unwrap_or_else(|| "participant".into());
        if !safe_user_name(&desktop_user) {
            return Err(ConfigError::Invalid {
                name: "GPUFLEET_DESKTOP_USER",
                value: desktop_user,
                reason:
                    "must be a user name: 1-32 of a-z, 0-9, _ and -, not starting with a digit or -"
                        .into(),
            });
        }
        let in_use_process = get("GPUFLEET_IN_USE_PROCESS");
        if let Some(name) = &in_use_process {
            if !safe_process_name(name) {
                return Err(ConfigError::Invalid {
                    name: "GPUFLEET_IN_USE_PROCESS",
                    value: name.clone(),
                    reason: "must be a process name: 1-15 of letters, digits, _, - and .".into(),
                });
            }
        }
        Ok(Ec2Config {
            desktop_user,
            in_use_process,
            deployment: deployment.to_string(),
            ami: get("GPUFLEET_AMI").ok_or(ConfigError::Missing("GPUFLEET_AMI"))?,
            instance_type: get("GPUFLEET_INSTANCE_TYPE").unwrap_or_else(|| "g4dn.xlarge".into()),
            subnet_id: get("GPUFLEET_SUBNET_ID"),
            security_group_ids: get("GPUFLEET_SECURITY_GROUP_IDS")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            key_name: get("GPUFLEET_KEY_NAME"),
            instance_profile: get("GPUFLEET_INSTANCE_PROFILE"),
            vm_log_group,
            agent_url,
        })
    }
}
