//! The compute provider on AWS: EC2. Every instance (and its volumes) is tagged with the
//! deployment, hostname and operation; listing, adopting and terminating only ever look at
//! instances carrying this deployment's tag.
//!
//! Length: ~360 lines of adapter; the rest is tests.

use std::collections::HashSet;
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

use super::config::Ec2Config;
use super::user_data::render_user_data;
use super::{
    classify, filter, tag, TAG_DEPLOYMENT, TAG_HOSTNAME, TAG_LEASE_EXPIRES, TAG_OPERATION,
    TAG_POOL, TAG_REQUEST,
};
use crate::adapters::aws::RequestStats;
use crate::error::{Error, Result};
use crate::ports::{
    ComputeProvider, Instance, InstanceState, LaunchError, LaunchSpec, MachineTags, Market,
};

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
                    // Instances of the offers API have records of their own (see `cloud`).
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

    async fn spot_price(&self, instance_type: &str) -> Result<Option<f64>> {
        self.stats.record("DescribeSpotPriceHistory", 0.0);
        let now = aws_sdk_ec2::primitives::DateTime::from(std::time::SystemTime::now());
        // A start time of now gives each zone's current price (newest first per zone).
        let page = self
            .client
            .describe_spot_price_history()
            .instance_types(InstanceType::from(instance_type))
            .product_descriptions("Linux/UNIX")
            .start_time(now)
            .send()
            .await
            .map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "DescribeSpotPriceHistory: {}",
                    DisplayErrorContext(e)
                ))
            })?;
        Ok(page
            .spot_price_history()
            .iter()
            .filter(|p| p.instance_type().map(|t| t.as_str()) == Some(instance_type))
            .filter_map(|p| p.spot_price()?.parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p > 0.0)
            .min_by(f64::total_cmp))
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
    use crate::adapters::aws::ec2::user_data::*;
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
