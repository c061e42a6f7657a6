//! Lambda function `provision`: SQS launch jobs → EC2 (see `functions::provision`).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::telemetry::init_tracing(true);
    let state = functions::lambda::state_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let state = state.clone();
        async move {
            Ok::<SqsBatchResponse, Error>(
                functions::provision::handle_batch(&state, event.payload).await,
            )
        }
    }))
    .await
}
