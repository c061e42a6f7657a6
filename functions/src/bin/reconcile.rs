//! Lambda function `reconcile`, run by an EventBridge schedule: see
//! `shared::usecases::reconcile`.

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::telemetry::init_tracing(true);
    let state = functions::lambda::state_from_env().await?;
    lambda_runtime::run(service_fn(|_event: LambdaEvent<serde_json::Value>| {
        let state = state.clone();
        async move {
            let report = shared::usecases::reconcile::reconcile(&state).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
