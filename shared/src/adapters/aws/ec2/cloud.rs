//! The aws_ec2 provider of the offers API: GPU instance types as offers (from
//! `DescribeInstanceTypes`, `DescribeInstanceTypeOfferings`, `DescribeSpotPriceHistory` and
//! the on-demand price table in `shared/data/`), and the lifecycle of instances created
//! from them. Every such instance carries the deployment tag and `gpufleet:instance`
//! (its record id); the VM reconcile leaves these to `usecases::instances::reconcile`.
//!
//! Length: one provider, ~530 lines, because offers and the instance lifecycle share the
//! ownership checks and pagination; the rest is tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, LocationType, ResourceType, TagSpecification,
};
use aws_sdk_ec2::Client;
use serde_json::json;

use super::config::Ec2Config;
use super::user_data::render_instance_user_data;
use super::{filter, internal, tag, TAG_DEPLOYMENT, TAG_INSTANCE, TAG_OWNER};
use crate::adapters::aws::RequestStats;
use crate::adapters::offer_cache::OfferCache;
use crate::domain::instances::{InstanceStatus, ProviderInstance};
use crate::domain::offers::{Offer, OfferQuery};
use crate::error::{Error, Result};
use crate::ports::{CreateInstanceSpec, GpuCloud, LaunchError};

pub const PROVIDER: &str = "aws_ec2";

pub use crate::domain::costs::PriceTable;

pub struct Ec2Cloud {
    client: Client,
    config: Ec2Config,
    region: String,
    ssh_user: String,
    prices: &'static PriceTable,
    cache: OfferCache,
    stats: Arc<RequestStats>,
}

fn status_of(name: Option<&InstanceStateName>) -> Option<InstanceStatus> {
    Some(match name? {
        InstanceStateName::Pending => InstanceStatus::Loading,
        InstanceStateName::Running => InstanceStatus::Running,
        InstanceStateName::Stopping => InstanceStatus::Stopping,
        InstanceStateName::Stopped => InstanceStatus::Stopped,
        InstanceStateName::ShuttingDown | InstanceStateName::Terminated => {
            InstanceStatus::Destroyed
        }
        _ => return None,
    })
}

/// A GPU instance type as DescribeInstanceTypes tells it.
struct GpuType {
    name: String,
    gpu_model: String,
    gpu_count: u32,
    gpu_memory_gb: f64,
    cpu_count: u32,
    ram_gb: f64,
    storage_gb: f64,
}

impl Ec2Cloud {
    pub fn new(
        client: Client,
        config: Ec2Config,
        region: &str,
        ssh_user: &str,
        cache_ttl: Duration,
    ) -> Result<Self> {
        Ok(Ec2Cloud {
            client,
            config,
            region: region.to_string(),
            ssh_user: ssh_user.to_string(),
            prices: PriceTable::shipped()?,
            cache: OfferCache::new(cache_ttl),
            stats: Arc::new(RequestStats::default()),
        })
    }

    /// EC2 calls made so far, per operation (the cache test reads this).
    pub fn stats(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }

    async fn gpu_types(&self) -> Result<Vec<GpuType>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            self.stats.record("DescribeInstanceTypes", 0.0);
            let page = self
                .client
                .describe_instance_types()
                .set_next_token(next.take())
                .max_results(100)
                .send()
                .await
                .map_err(|e| internal("DescribeInstanceTypes", DisplayErrorContext(e)))?;
            for t in page.instance_types() {
                // EC2 has no GPU filter: keep the types that report GPUs.
                let Some(gpu) = t.gpu_info() else { continue };
                let Some(first) = gpu.gpus().first() else {
                    continue;
                };
                let count: i32 = gpu.gpus().iter().filter_map(|g| g.count()).sum();
                // Fractional GPUs (g6f: a share of one L4) report no whole GPU: left out.
                if count <= 0 {
                    continue;
                }
                out.push(GpuType {
                    name: t
                        .instance_type()
                        .map(|i| i.as_str().to_string())
                        .unwrap_or_default(),
                    gpu_model: first.name().unwrap_or_default().to_string(),
                    gpu_count: u32::try_from(count).unwrap_or(0),
                    gpu_memory_gb: f64::from(gpu.total_gpu_memory_in_mib().unwrap_or(0)) / 1024.0,
                    cpu_count: t
                        .v_cpu_info()
                        .and_then(|v| v.default_v_cpus())
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(0),
                    ram_gb: t
                        .memory_info()
                        .and_then(|m| m.size_in_mib())
                        .map_or(0.0, |m| m as f64 / 1024.0),
                    storage_gb: t
                        .instance_storage_info()
                        .and_then(|s| s.total_size_in_gb())
                        .map_or(0.0, |g| g as f64),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Instance type → the availability zones offering it in this region.
    async fn offered_zones(&self, types: &[&str]) -> Result<HashMap<String, Vec<String>>> {
        let mut zones: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in types.chunks(100) {
            let mut next: Option<String> = None;
            loop {
                self.stats.record("DescribeInstanceTypeOfferings", 0.0);
                let page = self
                    .client
                    .describe_instance_type_offerings()
                    .location_type(LocationType::AvailabilityZone)
                    .filters(filter("instance-type", chunk))
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| {
                        internal("DescribeInstanceTypeOfferings", DisplayErrorContext(e))
                    })?;
                for o in page.instance_type_offerings() {
                    if let (Some(t), Some(az)) = (o.instance_type(), o.location()) {
                        zones
                            .entry(t.as_str().to_string())
                            .or_default()
                            .push(az.to_string());
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_string()),
                    _ => break,
                }
            }
        }
        for z in zones.values_mut() {
            z.sort();
            z.dedup();
        }
        Ok(zones)
    }

    /// Instance type → availability zone → the latest Linux spot price.
    async fn spot_prices(&self, types: &[&str]) -> Result<HashMap<String, BTreeMap<String, f64>>> {
        let mut prices: HashMap<String, BTreeMap<String, f64>> = HashMap::new();
        let now = aws_sdk_ec2::primitives::DateTime::from(std::time::SystemTime::now());
        for chunk in types.chunks(100) {
            let mut next: Option<String> = None;
            loop {
                self.stats.record("DescribeSpotPriceHistory", 0.0);
                let page = self
                    .client
                    .describe_spot_price_history()
                    .set_instance_types(Some(
                        chunk.iter().map(|t| InstanceType::from(*t)).collect(),
                    ))
                    .product_descriptions("Linux/UNIX")
                    .start_time(now)
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| internal("DescribeSpotPriceHistory", DisplayErrorContext(e)))?;
                for p in page.spot_price_history() {
                    let (Some(t), Some(az), Some(price)) = (
                        p.instance_type(),
                        p.availability_zone(),
                        p.spot_price().and_then(|s| s.parse::<f64>().ok()),
                    ) else {
                        continue;
                    };
                    // Newest first per zone: keep the first seen.
                    prices
                        .entry(t.as_str().to_string())
                        .or_default()
                        .entry(az.to_string())
                        .or_insert(price);
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_string()),
                    _ => break,
                }
            }
        }
        Ok(prices)
    }

    async fn fetch_offers(&self) -> Result<Vec<Offer>> {
        let types = self.gpu_types().await?;
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        let zones = self.offered_zones(&names).await?;
        let offered: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| zones.contains_key(*n))
            .collect();
        let spot = self.spot_prices(&offered).await?;
        let mut offers = Vec::new();
        for t in &types {
            let azs = zones.get(&t.name).cloned().unwrap_or_default();
            let status = if azs.is_empty() {
                "unavailable"
            } else {
                "available"
            };
            let mut push = |market: &str, price: f64, extra: serde_json::Value| {
                let provider_id = format!("{}:{}:{market}", self.region, t.name);
                let mut data = json!({
                    "instance_type": t.name,
                    "market": market,
                    "availability_zones": azs,
                    "gpu_memory_gb": t.gpu_memory_gb,
                });
                if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
                    d.extend(e.clone());
                }
                offers.push(Offer {
                    id: format!("{PROVIDER}:{provider_id}"),
                    provider: PROVIDER.into(),
                    provider_id,
                    name: format!("{} ({market})", t.name),
                    status: status.into(),
                    gpu_model: t.gpu_model.clone(),
                    gpu_count: t.gpu_count,
                    gpu_memory_gb: t.gpu_memory_gb,
                    cpu_count: t.cpu_count,
                    ram_gb: t.ram_gb,
                    storage_gb: t.storage_gb,
                    price_per_hour: price,
                    region: self.region.clone(),
                    provider_data: data,
                });
            };
            if let Some(price) = self.prices.price(&self.region, &t.name) {
                push(
                    "on-demand",
                    price,
                    json!({"price_source": format!("on-demand price table as of {}", self.prices.as_of)}),
                );
            }
            if let Some(by_az) = spot.get(&t.name) {
                if let Some(min) = by_az.values().copied().min_by(f64::total_cmp) {
                    push(
                        "spot",
                        min,
                        json!({"price_source": "DescribeSpotPriceHistory (lowest zone)", "spot_prices": by_az}),
                    );
                }
            }
        }
        Ok(offers)
    }

    async fn all_offers(&self) -> Result<Vec<Offer>> {
        self.cache.get_or_fetch("all", || self.fetch_offers()).await
    }

    /// Our instances of the offers API matching `extra` filters.
    async fn describe(&self, extra: Vec<Filter>) -> Result<Vec<ProviderInstance>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            self.stats.record("DescribeInstances", 0.0);
            let mut filters = vec![
                filter(&format!("tag:{TAG_DEPLOYMENT}"), &[&self.config.deployment]),
                filter("tag-key", &[TAG_INSTANCE]),
            ];
            filters.extend(extra.iter().cloned());
            let page = self
                .client
                .describe_instances()
                .set_filters(Some(filters))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| internal("DescribeInstances", DisplayErrorContext(e)))?;
            for r in page.reservations() {
                for i in r.instances() {
                    let Some(id) = i.instance_id() else { continue };
                    out.push(ProviderInstance {
                        provider_id: id.to_string(),
                        record_id: i
                            .tags()
                            .iter()
                            .find(|t| t.key() == Some(TAG_INSTANCE))
                            .and_then(|t| t.value())
                            .map(str::to_string),
                        status: status_of(i.state().and_then(|s| s.name())),
                        launched_at: i.launch_time().map_or(0, |t| t.to_millis().unwrap_or(0)),
                        public_ip: i.public_ip_address().map(str::to_string),
                        ssh_host: i
                            .public_ip_address()
                            .or(i.private_ip_address())
                            .map(str::to_string),
                        ssh_port: Some(22),
                    });
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn ours(&self, provider_id: &str) -> Result<Option<ProviderInstance>> {
        if !provider_id.starts_with("i-") || provider_id.len() > 32 {
            return Ok(None);
        }
        Ok(self
            .describe(vec![filter("instance-id", &[provider_id])])
            .await?
            .into_iter()
            .next())
    }

    async fn require_ours(&self, provider_id: &str) -> Result<ProviderInstance> {
        self.ours(provider_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("EC2 instance {provider_id}")))
    }
}

#[async_trait]
impl GpuCloud for Ec2Cloud {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn search_offers(&self, _query: &OfferQuery) -> Result<Vec<Offer>> {
        self.all_offers().await
    }

    async fn offer(&self, provider_id: &str) -> Result<Option<Offer>> {
        Ok(self
            .all_offers()
            .await?
            .into_iter()
            .find(|o| o.provider_id == provider_id))
    }

    async fn create(&self, spec: &CreateInstanceSpec) -> Result<ProviderInstance, LaunchError> {
        if self.config.ami.is_empty() {
            return Err(LaunchError::Rejected(
                "this function has no launch configuration (GPUFLEET_AMI)".into(),
            ));
        }
        let instance_type = spec
            .offer
            .provider_data
            .get("instance_type")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let spot = spec
            .offer
            .provider_data
            .get("market")
            .and_then(|v| v.as_str())
            == Some("spot");
        let user_data = render_instance_user_data(spec, &self.ssh_user)?;
        let name: String = spec.request.label.chars().take(128).collect();
        let tags = |kind: ResourceType| {
            TagSpecification::builder()
                .resource_type(kind)
                .tags(tag(TAG_DEPLOYMENT, &self.config.deployment))
                .tags(tag(TAG_INSTANCE, &spec.record_id))
                .tags(tag(TAG_OWNER, &spec.owner))
                .tags(tag("Name", &name))
                .build()
        };
        // The record id is the idempotency token: a retried create returns the instance the
        // first one started.
        let mut request = super::compute::run_instances_request(
            &self.client,
            &self.config,
            &self.config.ami,
            &instance_type,
            &spec.record_id,
            &user_data,
        )
        .tag_specifications(tags(ResourceType::Instance))
        .tag_specifications(tags(ResourceType::Volume));
        if spot {
            request = request.instance_market_options(super::compute::spot_market_options());
        }
        self.stats.record("RunInstances", 0.0);
        match request.send().await {
            Ok(out) => {
                let i = out.instances().first().ok_or_else(|| {
                    LaunchError::Other(internal("RunInstances", "no instance returned"))
                })?;
                Ok(ProviderInstance {
                    provider_id: i.instance_id().unwrap_or_default().to_string(),
                    record_id: Some(spec.record_id.clone()),
                    status: status_of(i.state().and_then(|s| s.name())),
                    launched_at: i.launch_time().map_or(0, |t| t.to_millis().unwrap_or(0)),
                    public_ip: i.public_ip_address().map(str::to_string),
                    ssh_host: i
                        .public_ip_address()
                        .or(i.private_ip_address())
                        .map(str::to_string),
                    ssh_port: Some(22),
                })
            }
            Err(e) => Err(match e.code() {
                Some(code) => super::classify(code, e.message().unwrap_or_default().to_string()),
                None => LaunchError::Other(internal("RunInstances", DisplayErrorContext(e))),
            }),
        }
    }

    async fn show(&self, provider_id: &str) -> Result<Option<ProviderInstance>> {
        self.ours(provider_id).await
    }

    async fn start(&self, provider_id: &str) -> Result<()> {
        self.require_ours(provider_id).await?;
        self.stats.record("StartInstances", 0.0);
        let sent = self
            .client
            .start_instances()
            .instance_ids(provider_id)
            .send()
            .await;
        sent.map(|_| ())
            .map_err(|e| internal("StartInstances", DisplayErrorContext(e)))
    }

    async fn stop(&self, provider_id: &str) -> Result<()> {
        self.require_ours(provider_id).await?;
        self.stats.record("StopInstances", 0.0);
        let sent = self
            .client
            .stop_instances()
            .instance_ids(provider_id)
            .send()
            .await;
        sent.map(|_| ())
            .map_err(|e| internal("StopInstances", DisplayErrorContext(e)))
    }

    async fn destroy(&self, provider_id: &str) -> Result<bool> {
        let Some(found) = self.ours(provider_id).await? else {
            // Not ours, or no longer listed: nothing of ours runs under this id.
            return Ok(true);
        };
        if found.status != Some(InstanceStatus::Destroyed) {
            self.stats.record("TerminateInstances", 0.0);
            self.client
                .terminate_instances()
                .instance_ids(provider_id)
                .send()
                .await
                .map_err(|e| internal("TerminateInstances", DisplayErrorContext(e)))?;
        }
        // Verified: shutting-down or terminated (billing has stopped), or gone.
        Ok(self
            .ours(provider_id)
            .await?
            .is_none_or(|i| i.status == Some(InstanceStatus::Destroyed)))
    }

    async fn list_owned(&self) -> Result<Vec<ProviderInstance>> {
        self.describe(vec![filter(
            "instance-state-name",
            &["pending", "running", "stopping", "stopped"],
        )])
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::aws::ec2::user_data::*;
    use crate::domain::instances::NewInstance;

    const HOSTILE: &str = "#!/bin/bash\necho 'a'\"b\" $(touch MARKER) `touch MARKER` ${HOME}\nGPUFLEET_ENV\n'; touch MARKER; echo '\nEOF\n\\\n";

    fn spec(script: &str) -> CreateInstanceSpec {
        CreateInstanceSpec {
            record_id: "aws_0011223344556677".into(),
            owner: "ann".into(),
            offer_id: "us-east-1:g5.xlarge:spot".into(),
            request: NewInstance {
                provider: PROVIDER.into(),
                offer_id: "us-east-1:g5.xlarge:spot".into(),
                image: Some("pytorch/pytorch:latest".into()),
                label: "x".into(),
                onstart_script: Some(script.into()),
                ssh_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1qR0p0mB8vK1y3yBv7Q0pJ1w3lq8m6kYv9r0sXhG2b a@b".into()),
            },
            offer: Offer {
                id: String::new(),
                provider: PROVIDER.into(),
                provider_id: String::new(),
                name: String::new(),
                status: "available".into(),
                gpu_model: String::new(),
                gpu_count: 1,
                gpu_memory_gb: 0.0,
                cpu_count: 1,
                ram_gb: 1.0,
                storage_gb: 0.0,
                price_per_hour: 1.0,
                region: "us-east-1".into(),
                provider_data: serde_json::Value::Null,
            },
        }
    }

    fn gunzip(bytes: &[u8]) -> String {
        use std::io::Read as _;
        let mut out = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut out)
            .expect("gzip");
        out
    }

    /// The caller's values only ever appear as base64 on the three `echo … | base64 -d`
    /// lines; every other line is the template's. Running exactly those lines with bash
    /// (into a temp dir) reproduces the script byte for byte and runs none of it.
    #[test]
    fn an_onstart_script_with_shell_metacharacters_cannot_break_out() {
        let rendered =
            gunzip(&render_instance_user_data(&spec(HOSTILE), "ubuntu").expect("renders"));
        let template_lines: Vec<&str> = INSTANCE_USER_DATA_TEMPLATE.lines().collect();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines.len(), template_lines.len(), "no line was added");
        for (got, want) in lines.iter().zip(&template_lines) {
            if want.contains("_B64__") {
                let (prefix, rest) = want.split_once("'__").expect("placeholder");
                let suffix = rest.split_once("__'").expect("placeholder end").1;
                let value = got
                    .strip_prefix(&format!("{prefix}'"))
                    .and_then(|v| v.strip_suffix(&format!("'{suffix}")))
                    .expect("same shape as the template");
                assert!(
                    value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)),
                    "{value}"
                );
            } else {
                assert_eq!(got, &want.replace("__SSH_USER__", "ubuntu"));
            }
        }
        let dir = tempfile::tempdir().expect("tmp");
        let decoding: String = lines
            .iter()
            .filter(|l| l.contains("| base64 -d >"))
            .map(|l| l.replace("/etc/gpufleet", &dir.path().display().to_string()) + "\n")
            .collect();
        let status = std::process::Command::new("bash")
            .args(["-euc", &decoding])
            .current_dir(dir.path())
            .status()
            .expect("bash");
        assert!(status.success());
        let onstart = std::fs::read_to_string(dir.path().join("onstart.sh")).expect("written");
        assert_eq!(onstart, HOSTILE);
        assert!(
            !dir.path().join("MARKER").exists(),
            "nothing of the script ran"
        );
        let syntax = std::process::Command::new("bash")
            .args(["-n", "-c", &rendered])
            .status()
            .expect("bash");
        assert!(syntax.success(), "the rendered script parses");
    }

    #[test]
    fn a_script_too_big_for_user_data_is_refused() {
        // Random bytes do not compress: 8 KB of them base64-encoded is ~11 KB.
        let noise: String = (0..20_000)
            .map(|_| char::from(b'!' + rand::random::<u8>() % 90))
            .collect();
        assert!(render_instance_user_data(&spec(&noise), "ubuntu").is_err());
        assert!(render_instance_user_data(&spec("echo hi"), "root; rm").is_err());
    }

    #[test]
    fn the_shipped_price_table_parses() {
        let table = PriceTable::shipped().expect("parses");
        assert_eq!(table.price("us-east-1", "g5.xlarge"), Some(1.006));
        assert_eq!(table.price("eu-west-1", "g5.xlarge"), None);
        assert!(!table.as_of.is_empty() && !table.source.is_empty());
    }
}
