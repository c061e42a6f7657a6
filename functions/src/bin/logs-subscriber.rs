//! Lambda function `logs-subscriber`, invoked by the CloudWatch Logs subscription on the VMs'
//! log group: see `functions::logs_subscriber`.

use aws_lambda_events::cloudwatch_logs::LogsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::telemetry::init_tracing(true);
    let state = functions::lambda::state_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<LogsEvent>| {
        let state = state.clone();
        async move { Ok::<_, Error>(functions::logs_subscriber::handle(&state, event.payload).await?) }
    }))
    .await
}
