//! Decorators that put every mutating cloud command into the command log: launches,
//! terminations, starts, stops and creates of instances, whichever provider runs them,
//! with the caller (`domain::command_log::current_caller`), the outcome and the time taken.
//! Reads (describe, search, show) are not logged. A failure to log is itself logged to the
//! process log but never fails the command: the machine exists either way.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::domain::command_log::{current_caller, CommandEntry};
use crate::domain::instances::ProviderInstance;
use crate::domain::offers::{Offer, OfferQuery};
use crate::error::{Error, Result};
use crate::ports::{
    Clock, CommandLogStore, ComputeProvider, CreateInstanceSpec, GpuCloud, Instance, LaunchError,
    LaunchSpec, MachineTags,
};

/// Which CLI the logged commands are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `aws ec2 …`
    Aws,
    /// `vastai …` (Vast.ai's CLI)
    Vast,
    /// What local mode does with processes.
    Local,
}

#[derive(Clone)]
pub struct CommandLogger {
    log: Arc<dyn CommandLogStore>,
    clock: Arc<dyn Clock>,
}

impl CommandLogger {
    pub fn new(log: Arc<dyn CommandLogStore>, clock: Arc<dyn Clock>) -> Self {
        CommandLogger { log, clock }
    }

    async fn record(&self, command: String, ok: bool, detail: Option<String>, started: Instant) {
        let entry = CommandEntry::new(
            self.clock.now_millis(),
            command,
            ok,
            detail,
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            current_caller(),
        );
        if let Err(e) = self.log.append_command(&entry).await {
            tracing::error!(command = %entry.command, error = ?e, "could not write the command log");
        }
    }
}

impl CommandLogger {
    /// Runs `f` and logs `command` with how it went: `detail` of the result, or the error.
    pub async fn run<T, E: std::fmt::Display>(
        &self,
        command: String,
        f: impl std::future::Future<Output = std::result::Result<T, E>>,
        detail: impl FnOnce(&T) -> Option<String>,
    ) -> std::result::Result<T, E> {
        let started = Instant::now();
        let result = f.await;
        match &result {
            Ok(v) => self.record(command, true, detail(v), started).await,
            Err(e) => self.record(command, false, failure(e), started).await,
        }
        result
    }
}

/// One line of detail for a failed command (the error's text, cut short).
fn failure(e: &impl std::fmt::Display) -> Option<String> {
    Some(e.to_string().chars().take(300).collect())
}

pub struct AuditedCompute {
    inner: Arc<dyn ComputeProvider>,
    logger: CommandLogger,
    dialect: Dialect,
}

impl AuditedCompute {
    pub fn new(inner: Arc<dyn ComputeProvider>, logger: CommandLogger, dialect: Dialect) -> Self {
        AuditedCompute {
            inner,
            logger,
            dialect,
        }
    }
}

#[async_trait]
impl ComputeProvider for AuditedCompute {
    async fn launch(&self, spec: &LaunchSpec) -> std::result::Result<String, LaunchError> {
        let command = match self.dialect {
            Dialect::Aws => format!(
                "aws ec2 run-instances --count 1 --client-token {}{}{}{} --tag-specifications 'ResourceType=instance,Tags=[{{Key=gpufleet:hostname,Value={}}}]'",
                spec.client_token,
                spec.image
                    .as_deref()
                    .map(|i| format!(" --image-id {i}"))
                    .unwrap_or_default(),
                spec.instance_type
                    .as_deref()
                    .map(|t| format!(" --instance-type {t}"))
                    .unwrap_or_default(),
                if spec.market == crate::ports::Market::Spot {
                    " --instance-market-options MarketType=spot"
                } else {
                    ""
                },
                spec.hostname
            ),
            _ => format!("start agent process for {}", spec.hostname),
        };
        self.logger
            .run(command, self.inner.launch(spec), |id| Some(id.clone()))
            .await
    }

    async fn find_by_hostname(&self, hostname: &str) -> Result<Option<Instance>> {
        self.inner.find_by_hostname(hostname).await
    }

    async fn spot_price(&self, instance_type: &str) -> Result<Option<f64>> {
        self.inner.spot_price(instance_type).await
    }

    async fn list_machines(&self) -> Result<Vec<Instance>> {
        self.inner.list_machines().await
    }

    async fn terminate(&self, instance_ids: &[String]) -> Result<Vec<String>> {
        if instance_ids.is_empty() {
            return self.inner.terminate(instance_ids).await;
        }
        let command = match self.dialect {
            Dialect::Aws => format!(
                "aws ec2 terminate-instances --instance-ids {}",
                instance_ids.join(" ")
            ),
            _ => format!("kill agent processes {}", instance_ids.join(" ")),
        };
        let asked = instance_ids.len();
        self.logger
            .run(command, self.inner.terminate(instance_ids), |confirmed| {
                Some(format!("{} of {asked} confirmed ending", confirmed.len()))
            })
            .await
    }

    fn tags(&self) -> Option<&dyn MachineTags> {
        self.inner.tags().map(|_| self as &dyn MachineTags)
    }
}

impl AuditedCompute {
    fn inner_tags(&self) -> Result<&dyn MachineTags> {
        self.inner
            .tags()
            .ok_or_else(|| Error::Unavailable("these machines carry no tags".into()))
    }
}

/// Only reachable through `tags()`, which offers it only when the wrapped provider has tags.
#[async_trait]
impl MachineTags for AuditedCompute {
    async fn set_tag(&self, instance_id: &str, key: &str, value: &str) -> Result<()> {
        let command = match self.dialect {
            Dialect::Aws => format!(
                "aws ec2 create-tags --resources {instance_id} --tags Key={key},Value={value}"
            ),
            _ => format!("tag {instance_id} {key}={value}"),
        };
        self.logger
            .run(
                command,
                async { self.inner_tags()?.set_tag(instance_id, key, value).await },
                |_| None,
            )
            .await
    }

    async fn get_tag(&self, instance_id: &str, key: &str) -> Result<Option<String>> {
        self.inner_tags()?.get_tag(instance_id, key).await
    }
}

pub struct AuditedCloud {
    inner: Arc<dyn GpuCloud>,
    logger: CommandLogger,
}

impl AuditedCloud {
    pub fn new(inner: Arc<dyn GpuCloud>, logger: CommandLogger) -> Self {
        AuditedCloud { inner, logger }
    }

    fn dialect(&self) -> Dialect {
        match self.inner.name() {
            "aws_ec2" => Dialect::Aws,
            "vast_ai" => Dialect::Vast,
            _ => Dialect::Local,
        }
    }
}

#[async_trait]
impl GpuCloud for AuditedCloud {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn requires_image(&self) -> bool {
        self.inner.requires_image()
    }

    async fn search_offers(&self, query: &OfferQuery) -> Result<Vec<Offer>> {
        self.inner.search_offers(query).await
    }

    async fn offer(&self, provider_id: &str) -> Result<Option<Offer>> {
        self.inner.offer(provider_id).await
    }

    async fn create(&self, spec: &CreateInstanceSpec) -> Result<ProviderInstance, LaunchError> {
        let command = match self.dialect() {
            Dialect::Aws => format!(
                "aws ec2 run-instances --count 1 --client-token {} --instance-type {}{} --tag-specifications 'ResourceType=instance,Tags=[{{Key=gpufleet:instance,Value={}}}]'",
                spec.record_id,
                spec.offer.provider_data["instance_type"].as_str().unwrap_or("?"),
                if spec.offer.provider_data["market"] == "spot" {
                    " --instance-market-options MarketType=spot"
                } else {
                    ""
                },
                spec.record_id
            ),
            Dialect::Vast => format!(
                "vastai create instance {} --image {} --label gpufleet:…:{}",
                spec.offer_id,
                spec.request.image.as_deref().unwrap_or("-"),
                spec.record_id
            ),
            Dialect::Local => format!("start placeholder process for {}", spec.record_id),
        };
        self.logger
            .run(command, self.inner.create(spec), |i| {
                Some(i.provider_id.clone())
            })
            .await
    }

    async fn show(&self, provider_id: &str) -> Result<Option<ProviderInstance>> {
        self.inner.show(provider_id).await
    }

    async fn start(&self, provider_id: &str) -> Result<()> {
        let command = match self.dialect() {
            Dialect::Aws => format!("aws ec2 start-instances --instance-ids {provider_id}"),
            Dialect::Vast => format!("vastai start instance {provider_id}"),
            Dialect::Local => format!("kill -CONT {provider_id}"),
        };
        self.logger
            .run(command, self.inner.start(provider_id), |_| None)
            .await
    }

    async fn stop(&self, provider_id: &str) -> Result<()> {
        let command = match self.dialect() {
            Dialect::Aws => format!("aws ec2 stop-instances --instance-ids {provider_id}"),
            Dialect::Vast => format!("vastai stop instance {provider_id}"),
            Dialect::Local => format!("kill -STOP {provider_id}"),
        };
        self.logger
            .run(command, self.inner.stop(provider_id), |_| None)
            .await
    }

    async fn destroy(&self, provider_id: &str) -> Result<bool> {
        let command = match self.dialect() {
            Dialect::Aws => format!("aws ec2 terminate-instances --instance-ids {provider_id}"),
            Dialect::Vast => format!("vastai destroy instance {provider_id}"),
            Dialect::Local => format!("kill -KILL {provider_id}"),
        };
        self.logger
            .run(command, self.inner.destroy(provider_id), |confirmed| {
                Some(
                    if *confirmed {
                        "confirmed"
                    } else {
                        "not yet confirmed"
                    }
                    .into(),
                )
            })
            .await
    }

    async fn list_owned(&self) -> Result<Vec<ProviderInstance>> {
        self.inner.list_owned().await
    }
}
