//! Wiring for the Lambda binaries: tracing, state from the environment (read once, before
//! the first invocation), then the runtime loop around one handler.

use std::future::Future;
use std::sync::Arc;

use lambda_http::{service_fn, Error};
use shared::adapters::{
    DynamoStore, Ec2Compute, Ec2Config, PollingNotifier, SqsQueue, SystemClock,
};
use shared::config::Config;
use shared::state::AdminCredentials;
use shared::AppState;

use crate::http::{Request, Response};

/// Builds the state a Lambda function runs with: DynamoDB (`GPUFLEET_TABLE`, with region,
/// credentials and `AWS_ENDPOINT_URL` from the standard AWS environment), and long-polls that
/// re-read the store every `GPUFLEET_POLL_INTERVAL_MS`.
///
/// Launches go to SQS (`GPUFLEET_QUEUE_URL`) for the provisioning function; EC2 launch options
/// come from `Ec2Config` (`GPUFLEET_AMI`, `GPUFLEET_INSTANCE_TYPE`, ...).
pub async fn state_from_env() -> Result<AppState, Error> {
    let config = Config::from_env()?;
    let admin = AdminCredentials::new(&config.admin_user, config.require_admin_password()?);
    let ec2_config = Ec2Config::from_env(&config.deployment)?;
    // One AWS configuration (region, credentials, endpoint) for the three clients.
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.require_table()?);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), config.require_queue_url()?);
    let compute = Ec2Compute::new(aws_sdk_ec2::Client::new(&sdk), ec2_config);
    Ok(AppState {
        store: Arc::new(store),
        compute: Arc::new(compute),
        queue: Arc::new(queue),
        notifier: Arc::new(PollingNotifier {
            interval: config.poll_interval,
        }),
        clock: Arc::new(SystemClock),
        admin: Arc::new(admin),
        config: Arc::new(config),
    })
}

/// Runs one handler as a Lambda function behind API Gateway.
pub async fn run<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(AppState, Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    crate::telemetry::init_tracing(true);
    let state = state_from_env().await?;
    lambda_http::run(service_fn(move |req: Request| {
        let state = state.clone();
        async move { Ok::<_, Error>(handler(state, req).await) }
    }))
    .await
}
