//! Wiring for the Lambda artifact: which function this is (`GPUFLEET_FUNCTION`), tracing,
//! state from the environment (read once, before the first invocation), then the runtime
//! loop around that function's handler.
//!
//! Each function builds only the adapters its entry in [`crate::catalog::FUNCTIONS`] names
//! and reads only their configuration; the rest are [`NotGranted`] (its IAM role has no
//! permission for them either).

use std::sync::Arc;

use lambda_http::{service_fn, Error};
use shared::adapters::{
    AuditedCloud, AuditedCompute, CommandLogger, Dialect, DynamoStore, Ec2Cloud, Ec2Compute,
    Ec2Config, Ec2Network, NoNetwork, NotGranted, PollingNotifier, S3WorkStore, SqsQueue,
    SystemClock, VastCloud,
};
use shared::config::{Config, ConfigError};
use shared::ports::{
    ComputeProvider, GpuCloud, Instance, JobQueue, LaunchError, LaunchSpec, MachineTags,
    NetworkProvider,
};
use shared::state::{AdminCredentials, Clouds};
use shared::AppState;

use aws_lambda_events::cloudwatch_logs::LogsEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;

use crate::catalog::{
    self, CloudAccess, Ec2Access, LambdaFunction, NetworkAccess, Trigger, WorkAccess,
};
use crate::http::{Request, Response};

/// Everything one function reads from its environment, checked before any AWS client exists.
pub struct FunctionConfig {
    pub function: &'static LambdaFunction,
    pub config: Config,
    pub table: String,
    pub admin: AdminCredentials,
    pub queue_url: Option<String>,
    pub ec2: Option<Ec2Config>,
    /// The EC2 settings of the offers API's aws_ec2 provider, where the function uses it.
    pub cloud_ec2: Option<Ec2Config>,
    /// The bucket of participants' work, where the function uses it.
    pub bucket: Option<String>,
}

/// Reads function `name`'s configuration through `lookup`; the error names the first missing
/// or invalid variable. The template check runs this against each function's environment.
pub fn function_config(
    name: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<FunctionConfig, ConfigError> {
    let function = catalog::function(name).ok_or_else(|| ConfigError::Invalid {
        name: "function",
        value: name.to_string(),
        reason: "not in functions::catalog::FUNCTIONS".into(),
    })?;
    let config = Config::from_lookup(&lookup)?;
    let table = config.require_table()?.to_string();
    let admin = if function.needs_admin_password() {
        AdminCredentials::new(&config.admin_user, config.require_admin_password()?)
    } else {
        AdminCredentials::disabled()
    };
    let queue_url = if function.uses_queue() {
        Some(config.require_queue_url()?.to_string())
    } else {
        None
    };
    let ec2 = match function.ec2 {
        Ec2Access::None => None,
        // The IAM role tells the two apart; the adapter is the same.
        Ec2Access::Describe | Ec2Access::Terminate | Ec2Access::Tag => {
            Some(Ec2Config::terminate_only(&config.deployment))
        }
        Ec2Access::Launch => {
            if config.api_url.is_none() {
                return Err(ConfigError::Missing("GPUFLEET_API_URL"));
            }
            Some(Ec2Config::from_lookup(&config.deployment, &lookup)?)
        }
    };
    let cloud_ec2 = match function.clouds {
        CloudAccess::None => None,
        CloudAccess::Read | CloudAccess::Start | CloudAccess::Stop | CloudAccess::Terminate => {
            Some(Ec2Config::terminate_only(&config.deployment))
        }
        CloudAccess::Create => Some(Ec2Config::from_lookup(&config.deployment, &lookup)?),
    };
    let bucket = match function.work {
        WorkAccess::None => None,
        _ => Some(
            config
                .collect
                .bucket
                .clone()
                .ok_or(ConfigError::Missing("GPUFLEET_COLLECT_BUCKET"))?,
        ),
    };
    Ok(FunctionConfig {
        function,
        config,
        table,
        admin,
        queue_url,
        ec2,
        cloud_ec2,
        bucket,
    })
}

/// Builds the state function `name` runs with: DynamoDB (`GPUFLEET_TABLE`, with region,
/// credentials and `AWS_ENDPOINT_URL` from the standard AWS environment), SQS and EC2 only
/// where the catalogue says so, and long-polls that re-read the store every
/// `GPUFLEET_POLL_INTERVAL_MS`.
pub async fn state_from_env(name: &str) -> Result<AppState, Error> {
    let f = function_config(name, |k| std::env::var(k).ok())?;
    // One AWS configuration (region, credentials, endpoint) for every client.
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &f.table);
    let queue: Arc<dyn JobQueue> = match &f.queue_url {
        Some(url) => Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url)),
        None => Arc::new(NotGranted("the launch queue")),
    };
    let store: Arc<DynamoStore> = Arc::new(store);
    // Every mutating cloud command goes into the command log (docs/offers.md).
    let logger = CommandLogger::new(store.clone(), Arc::new(SystemClock));
    let compute: Arc<dyn ComputeProvider> = match f.ec2 {
        Some(ec2) => Arc::new(AuditedCompute::new(
            Arc::new(Ec2Compute::new(aws_sdk_ec2::Client::new(&sdk), ec2)),
            logger.clone(),
            Dialect::Aws,
        )),
        // Pricing a start reads spot prices and nothing else of EC2.
        None if f.function.prices_starts() => Arc::new(SpotPricesOnly(Ec2Compute::new(
            aws_sdk_ec2::Client::new(&sdk),
            Ec2Config::terminate_only(&f.config.deployment),
        ))),
        None => Arc::new(NotGranted("EC2")),
    };
    let mut clouds: Vec<Arc<dyn GpuCloud>> = Vec::new();
    if let Some(ec2) = f.cloud_ec2 {
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
        clouds.push(Arc::new(AuditedCloud::new(
            Arc::new(Ec2Cloud::new(
                aws_sdk_ec2::Client::new(&sdk),
                ec2,
                &region,
                &f.config.ssh_user,
                f.config.offer_cache,
            )?),
            logger.clone(),
        )));
        if let Some(key) = &f.config.vast_api_key {
            clouds.push(Arc::new(AuditedCloud::new(
                Arc::new(VastCloud::new(
                    &f.config.vast_api_url,
                    key,
                    &f.config.deployment,
                    f.config.offer_cache,
                )?),
                logger.clone(),
            )));
        }
    }
    let network: Arc<dyn NetworkProvider> = match f.function.network {
        NetworkAccess::None => Arc::new(NoNetwork(
            "network operations are not granted to this function",
        )),
        NetworkAccess::Read | NetworkAccess::Write => Arc::new(Ec2Network::new(
            aws_sdk_ec2::Client::new(&sdk),
            &f.config.deployment,
            &sdk.region().map(|r| r.to_string()).unwrap_or_default(),
            logger.clone(),
        )),
    };
    let work: Arc<dyn shared::ports::WorkStore> = match &f.bucket {
        Some(bucket) => {
            // Path-style addressing only against an emulator (a custom endpoint).
            let s3 = aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(sdk.endpoint_url().is_some())
                .build();
            Arc::new(S3WorkStore::new(aws_sdk_s3::Client::from_conf(s3), bucket))
        }
        None => Arc::new(NotGranted("the bucket of participants' work")),
    };
    Ok(AppState {
        work,
        network,
        clouds: Arc::new(Clouds::new(clouds)),
        store,
        compute,
        queue,
        notifier: Arc::new(PollingNotifier {
            interval: f.config.poll_interval,
        }),
        clock: Arc::new(SystemClock),
        admin: Arc::new(f.admin),
        config: Arc::new(f.config),
    })
}

/// EC2's spot prices for a function that prices starts but manages no machines; every
/// other call is [`NotGranted`].
struct SpotPricesOnly(Ec2Compute);

#[async_trait::async_trait]
impl ComputeProvider for SpotPricesOnly {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, LaunchError> {
        NOT_GRANTED.launch(spec).await
    }
    async fn find_by_hostname(&self, hostname: &str) -> shared::Result<Option<Instance>> {
        NOT_GRANTED.find_by_hostname(hostname).await
    }
    async fn list_machines(&self) -> shared::Result<Vec<Instance>> {
        NOT_GRANTED.list_machines().await
    }
    async fn terminate(&self, instance_ids: &[String]) -> shared::Result<Vec<String>> {
        NOT_GRANTED.terminate(instance_ids).await
    }
    fn tags(&self) -> Option<&dyn MachineTags> {
        NOT_GRANTED.tags()
    }
    async fn spot_price(&self, instance_type: &str) -> shared::Result<Option<f64>> {
        self.0.spot_price(instance_type).await
    }
}

const NOT_GRANTED: NotGranted = NotGranted("EC2 (beyond spot prices)");

/// Which function this process is: `GPUFLEET_FUNCTION`, one of the catalogue's names. The
/// error names the variable (and, for an unknown name, where the names are listed).
pub fn function_from(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<&'static LambdaFunction, ConfigError> {
    let name = lookup(crate::template::FUNCTION_VARIABLE)
        .filter(|n| !n.trim().is_empty())
        .ok_or(ConfigError::Missing("GPUFLEET_FUNCTION"))?;
    catalog::function(name.trim()).ok_or_else(|| ConfigError::Invalid {
        name: "GPUFLEET_FUNCTION",
        value: name.clone(),
        reason: "not a function of this deployment (functions::catalog::FUNCTIONS; the template sets it)".into(),
    })
}

/// The whole `main` of the Lambda artifact: learns which function it is, builds the
/// runtime, reads that function's configuration and serves its trigger. Refuses to start,
/// naming the variable, when `GPUFLEET_FUNCTION` is missing or unknown.
pub fn main() -> Result<(), Error> {
    crate::telemetry::init_tracing(true);
    let function = match function_from(|k| std::env::var(k).ok()) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e.into());
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(function))
}

async fn serve(function: &'static LambdaFunction) -> Result<(), Error> {
    let name = function.name;
    let state = state_from_env(name).await?;
    match function.trigger {
        Trigger::Http => {
            let route =
                crate::routes::of_function(name).ok_or_else(|| format!("no route for {name}"))?;
            lambda_http::run(service_fn(move |req: Request| {
                let state = state.clone();
                async move {
                    Ok::<Response, Error>(crate::router::serve_route(route, state, req).await)
                }
            }))
            .await
        }
        Trigger::Queue => {
            lambda_runtime::run(lambda_runtime::service_fn(
                |event: LambdaEvent<SqsEvent>| {
                    let state = state.clone();
                    async move {
                        Ok::<SqsBatchResponse, Error>(
                            crate::provision::handle_batch(&state, event.payload).await,
                        )
                    }
                },
            ))
            .await
        }
        Trigger::Schedule => {
            lambda_runtime::run(lambda_runtime::service_fn(
                |_event: LambdaEvent<serde_json::Value>| {
                    let state = state.clone();
                    async move {
                        let report = shared::usecases::reconcile::reconcile(&state).await?;
                        Ok::<_, Error>(serde_json::to_value(report)?)
                    }
                },
            ))
            .await
        }
        Trigger::LogsSubscription => {
            lambda_runtime::run(lambda_runtime::service_fn(
                |event: LambdaEvent<LogsEvent>| {
                    let state = state.clone();
                    async move {
                        crate::logs_subscriber::handle(&state, event.payload).await?;
                        Ok::<(), Error>(())
                    }
                },
            ))
            .await
        }
    }
}
