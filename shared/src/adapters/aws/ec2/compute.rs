//! The compute provider on AWS: EC2. Every instance (and its volumes) is tagged with the
//! deployment, hostname and operation; listing, adopting and terminating only ever look at
//! instances carrying this deployment's tag.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    MarketType, ResourceType, SpotInstanceType, SpotMarketOptions, TagSpecification,
};
use aws_sdk_ec2::Client;
use base64::Engine as _;

use super::{
    classify, filter, tag, TAG_DEPLOYMENT, TAG_HOSTNAME, TAG_LEASE_EXPIRES, TAG_OPERATION,
    TAG_POOL, TAG_REQUEST, USER_DATA_LIMIT,
};
use crate::adapters::aws::RequestStats;
use crate::config::ConfigError;
use crate::error::{Error, Result};
use crate::ports::{
    ComputeProvider, Instance, InstanceState, LaunchError, LaunchSpec, MachineTags, Market,
};

/// The bootstrap script template, rendered by `render_user_data`.
const USER_DATA_TEMPLATE: &str = include_str!("user_data.sh");

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

/// Boot options that go into every VM's user_data.
#[derive(Debug, Clone, Copy)]
pub struct BootOptions<'a> {
    pub agent_url: &'a str,
    pub vm_log_group: Option<&'a str>,
    pub desktop_user: &'a str,
    pub in_use_process: Option<&'a str>,
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

pub use crate::domain::crd::valid_user_name as safe_user_name;

/// A process name as the kernel keeps it (`comm`: at most 15 bytes), from a safe set.
pub fn safe_process_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
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

/// CloudWatch Logs group names (their documented character set), safe inside the script.
fn safe_log_group(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./#".contains(c))
}

/// URLs we are willing to put into a shell script: no quotes, spaces, `$`, backticks, `;`.
fn safe_url(url: &str) -> bool {
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
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(script.as_bytes())
        .and_then(|()| gz.finish())
        .map_err(|e| Error::Internal(anyhow::anyhow!("gzip: {e}")))
        .and_then(|bytes| {
            if bytes.len() > USER_DATA_LIMIT {
                return Err(Error::Internal(anyhow::anyhow!(
                    "user_data is {} bytes, over EC2's {USER_DATA_LIMIT}",
                    bytes.len()
                )));
            }
            Ok(bytes)
        })
}

/// A RunInstances call with what every launch shares: one machine of `instance_type` from
/// `image`, the idempotency token, gzipped user_data, IMDSv2 only (a token in user_data is
/// not readable through IMDSv1 by SSRF), and the deployment's subnet, key and groups.
pub(crate) fn run_instances_request(
    client: &Client,
    config: &Ec2Config,
    image: &str,
    instance_type: &str,
    client_token: &str,
    user_data: &[u8],
) -> aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder {
    let mut request = client
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::from(instance_type))
        .min_count(1)
        .max_count(1)
        .client_token(client_token)
        .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .build(),
        )
        .set_subnet_id(config.subnet_id.clone())
        .set_key_name(config.key_name.clone());
    for sg in &config.security_group_ids {
        request = request.security_group_ids(sg);
    }
    request
}

/// One-time spot, terminated on interruption (both kinds of launch use it).
pub(crate) fn spot_market_options() -> InstanceMarketOptionsRequest {
    InstanceMarketOptionsRequest::builder()
        .market_type(MarketType::Spot)
        .spot_options(
            SpotMarketOptions::builder()
                .spot_instance_type(SpotInstanceType::OneTime)
                .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                .build(),
        )
        .build()
}

#[derive(Clone)]
pub struct Ec2Compute {
    client: Client,
    config: Ec2Config,
    stats: Arc<RequestStats>,
}

/// States of an instance that still exists in a way we care about.
const LIVE_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

fn state_of(name: Option<&InstanceStateName>) -> InstanceState {
    match name {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::Stopping) => InstanceState::Stopping,
        Some(InstanceStateName::Stopped) => InstanceState::Stopped,
        Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        _ => InstanceState::Terminated,
    }
}

impl Ec2Compute {
    pub fn new(client: Client, config: Ec2Config) -> Self {
        Ec2Compute {
            client,
            config,
            stats: Arc::new(RequestStats::default()),
        }
    }

    /// EC2 API calls made so far, per operation.
    pub fn stats(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }

    /// This deployment's instances matching `extra` filters, following pagination.
    async fn describe(&self, extra: Vec<Filter>) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            self.stats.record("DescribeInstances", 0.0);
            let page = self
                .client
                .describe_instances()
                .set_filters(Some({
                    let mut f = vec![filter(
                        &format!("tag:{TAG_DEPLOYMENT}"),
                        &[&self.config.deployment],
                    )];
                    f.extend(extra.iter().cloned());
                    f
                }))
                .set_next_token(next.take())
                .max_results(1000)
                .send()
                .await
                .map_err(|e| {
                    Error::Internal(anyhow::anyhow!(
                        "EC2 DescribeInstances: {}",
                        DisplayErrorContext(e)
                    ))
                })?;
            for reservation in page.reservations() {
                for i in reservation.instances() {
                    let Some(id) = i.instance_id() else { continue };
                    // Instances of the offers API have records of their own (see ec2_cloud).
                    if i.tags()
                        .iter()
                        .any(|t| t.key() == Some(super::TAG_INSTANCE))
                    {
                        continue;
                    }
                    out.push(Instance {
                        id: id.to_string(),
                        hostname: i
                            .tags()
                            .iter()
                            .find(|t| t.key() == Some(TAG_HOSTNAME))
                            .and_then(|t| t.value())
                            .map(str::to_string),
                        state: state_of(i.state().and_then(|s| s.name())),
                        launched_at: i.launch_time().map_or(0, |t| t.to_millis().unwrap_or(0)),
                        address: i
                            .public_ip_address()
                            .or(i.private_ip_address())
                            .map(str::to_string),
                    });
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl ComputeProvider for Ec2Compute {
    async fn launch(&self, spec: &LaunchSpec) -> std::result::Result<String, LaunchError> {
        if self.config.ami.is_empty() {
            return Err(LaunchError::Rejected(
                "this function has no launch configuration (GPUFLEET_AMI)".into(),
            ));
        }
        let user_data = render_user_data(spec, &self.config.boot_options())?;
        let tags = |kind: ResourceType| {
            let mut builder = TagSpecification::builder()
                .resource_type(kind)
                .tags(tag(TAG_DEPLOYMENT, &self.config.deployment))
                .tags(tag(TAG_HOSTNAME, &spec.hostname))
                .tags(tag(TAG_OPERATION, &spec.operation_id))
                .tags(tag("Name", &spec.hostname));
            if let Some(lease) = &spec.lease {
                builder = builder
                    .tags(tag(TAG_REQUEST, &lease.request_id))
                    .tags(tag(TAG_LEASE_EXPIRES, &lease.expires_at));
            }
            if let Some(pool) = &spec.pool {
                builder = builder.tags(tag(TAG_POOL, pool));
            }
            builder.build()
        };
        let instance_type = spec
            .instance_type
            .as_deref()
            .unwrap_or(&self.config.instance_type);
        let mut request = run_instances_request(
            &self.client,
            &self.config,
            spec.image.as_deref().unwrap_or(&self.config.ami),
            instance_type,
            &spec.client_token,
            &user_data,
        )
        .tag_specifications(tags(ResourceType::Instance))
        .tag_specifications(tags(ResourceType::Volume));
        if let Some(profile) = &self.config.instance_profile {
            request = request.iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(profile)
                    .build(),
            );
        }
        if spec.market == Market::Spot {
            request = request.instance_market_options(spot_market_options());
        }
        self.stats.record("RunInstances", 0.0);
        match request.send().await {
            Ok(out) => out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .map(str::to_string)
                .ok_or_else(|| {
                    LaunchError::Other(Error::Internal(anyhow::anyhow!(
                        "RunInstances returned no instance"
                    )))
                }),
            Err(e) => match e.code() {
                Some(code) => {
                    let code = code.to_string();
                    Err(classify(&code, e.message().unwrap_or_default().to_string()))
                }
                None => Err(LaunchError::Other(Error::Internal(anyhow::anyhow!(
                    "EC2 RunInstances: {}",
                    DisplayErrorContext(e)
                )))),
            },
        }
    }

    async fn find_by_hostname(&self, hostname: &str) -> Result<Option<Instance>> {
        Ok(self
            .describe(vec![
                filter(&format!("tag:{TAG_HOSTNAME}"), &[hostname]),
                filter(
                    "instance-state-name",
                    &["pending", "running", "stopping", "stopped"],
                ),
            ])
            .await?
            .into_iter()
            .next())
    }

    async fn list_machines(&self) -> Result<Vec<Instance>> {
        self.describe(vec![filter("instance-state-name", &LIVE_STATES)])
            .await
    }

    async fn terminate(&self, instance_ids: &[String]) -> Result<Vec<String>> {
        let mut confirmed = Vec::new();
        for batch in instance_ids.chunks(200) {
            let ids: Vec<&str> = batch.iter().map(String::as_str).collect();
            // Only instances carrying our deployment tag are ever terminated.
            let ours = self.describe(vec![filter("instance-id", &ids)]).await?;
            let ours_ids: HashSet<&str> = ours.iter().map(|i| i.id.as_str()).collect();
            let to_end: Vec<String> = ours
                .iter()
                .filter(|i| !i.state.is_ending())
                .map(|i| i.id.clone())
                .collect();
            if !to_end.is_empty() {
                self.stats.record("TerminateInstances", 0.0);
                self.client
                    .terminate_instances()
                    .set_instance_ids(Some(to_end))
                    .send()
                    .await
                    .map_err(|e| {
                        Error::Internal(anyhow::anyhow!(
                            "EC2 TerminateInstances: {}",
                            DisplayErrorContext(e)
                        ))
                    })?;
            }
            // Confirm: every one of ours is now shutting down or terminated.
            let after = self.describe(vec![filter("instance-id", &ids)]).await?;
            for id in batch {
                match after.iter().find(|i| &i.id == id) {
                    Some(i) if i.state.is_ending() => confirmed.push(id.clone()),
                    Some(_) => {}
                    // Not ours: never touched. Ours but no longer listed: gone.
                    None if ours_ids.contains(id.as_str()) => confirmed.push(id.clone()),
                    None => {}
                }
            }
        }
        Ok(confirmed)
    }

    fn tags(&self) -> Option<&dyn MachineTags> {
        Some(self)
    }
}

#[async_trait]
impl MachineTags for Ec2Compute {
    async fn set_tag(&self, instance_id: &str, key: &str, value: &str) -> Result<()> {
        if self
            .describe(vec![filter("instance-id", &[instance_id])])
            .await?
            .is_empty()
        {
            return Err(Error::NotFound(format!(
                "instance {instance_id} of this deployment"
            )));
        }
        self.stats.record("CreateTags", 0.0);
        self.client
            .create_tags()
            .resources(instance_id)
            .tags(tag(key, value))
            .send()
            .await
            .map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "EC2 CreateTags: {}",
                    DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }

    async fn get_tag(&self, instance_id: &str, key: &str) -> Result<Option<String>> {
        self.stats.record("DescribeTags", 0.0);
        let out = self
            .client
            .describe_tags()
            .filters(filter("resource-id", &[instance_id]))
            .filters(filter("key", &[key]))
            .send()
            .await
            .map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "EC2 DescribeTags: {}",
                    DisplayErrorContext(e)
                ))
            })?;
        Ok(out
            .tags()
            .first()
            .and_then(|t| t.value())
            .map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VmToken;

    fn spec(hostname: &str, url: &str) -> LaunchSpec {
        LaunchSpec {
            hostname: hostname.into(),
            token: VmToken::generate(),
            allocator_url: url.into(),
            operation_id: "op".into(),
            client_token: "ct".into(),
            market: Market::OnDemand,
            instance_type: None,
            lease: None,
            image: None,
            pool: None,
        }
    }

    fn gunzip(bytes: &[u8]) -> String {
        use std::io::Read as _;
        let mut out = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn user_data_is_rendered_small_and_safe() {
        let s = spec(
            "gpufleet-vm-0a1b2c3d",
            "https://abc.execute-api.us-east-1.amazonaws.com",
        );
        let bytes = render_user_data(
            &s,
            &BootOptions {
                agent_url: "https://example.org/gpufleet",
                vm_log_group: Some("/gpufleet/prod/vms"),
                desktop_user: "participant",
                in_use_process: Some("sleap-label"),
            },
        )
        .unwrap();
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
        let script = gunzip(&bytes);
        assert!(script.contains("GPUFLEET_HOSTNAME=gpufleet-vm-0a1b2c3d"));
        assert!(script.contains(&format!("GPUFLEET_AGENT_TOKEN={}", s.token.as_str())));
        assert!(script.contains("LOG_GROUP='/gpufleet/prod/vms'"));
        assert!(script.contains("DESKTOP_USER='participant'"));
        assert!(script.contains("IN_USE_PROCESS='sleap-label'"));
        for placeholder in [
            "__API_URL__",
            "__HOSTNAME__",
            "__TOKEN__",
            "__AGENT_URL__",
            "__LOG_GROUP__",
            "__LOG_STREAM__",
            "__DESKTOP_USER__",
            "__IN_USE_PROCESS__",
        ] {
            assert!(!script.contains(placeholder), "{placeholder} filled");
        }
    }

    #[test]
    fn values_that_could_escape_the_script_are_refused() {
        for (host, url) in [
            ("vm'; rm -rf /", "https://ok.example"),
            ("vm$(id)", "https://ok.example"),
            ("ok", "https://ok.example/'$(id)'"),
            ("ok", "https://ok.example/`id`"),
            ("ok", "https://ok.example/ a"),
            ("ok", "file:///etc/passwd"),
        ] {
            assert!(
                render_user_data(&spec(host, url), &boot("https://example.org/a", None)).is_err(),
                "{host} {url}"
            );
        }
    }

    #[test]
    fn log_groups_that_could_escape_the_script_are_refused() {
        let s = spec("ok", "https://ok.example");
        for group in ["a'b", "a b", "$(id)", "a;b", ""] {
            assert!(render_user_data(&s, &boot("https://example.org/a", Some(group))).is_err());
        }
    }

    fn boot<'a>(agent_url: &'a str, vm_log_group: Option<&'a str>) -> BootOptions<'a> {
        BootOptions {
            agent_url,
            vm_log_group,
            desktop_user: "participant",
            in_use_process: None,
        }
    }

    #[test]
    fn user_and_process_names_that_could_escape_the_script_are_refused() {
        let s = spec("ok", "https://ok.example");
        for user in [
            "",
            "Root",
            "a b",
            "a'b",
            "$(id)",
            "-x",
            "1x",
            &"a".repeat(33),
        ] {
            let options = BootOptions {
                desktop_user: user,
                ..boot("https://example.org/a", None)
            };
            assert!(render_user_data(&s, &options).is_err(), "{user:?}");
        }
        for process in ["", "a b", "a'b", "$(id)", "a;b", &"a".repeat(16)] {
            let options = BootOptions {
                in_use_process: Some(process),
                ..boot("https://example.org/a", None)
            };
            assert!(render_user_data(&s, &options).is_err(), "{process:?}");
        }
    }

    #[test]
    fn error_codes_are_classified() {
        assert!(matches!(
            classify("InsufficientInstanceCapacity", "x".into()),
            LaunchError::Capacity(_)
        ));
        assert!(matches!(
            classify("RequestLimitExceeded", "x".into()),
            LaunchError::Throttled(_)
        ));
        assert!(matches!(
            classify("InvalidAMIID.NotFound", "x".into()),
            LaunchError::Rejected(_)
        ));
        assert!(matches!(
            classify("InternalError", "x".into()),
            LaunchError::Other(_)
        ));
    }
}
