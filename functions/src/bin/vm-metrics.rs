//! Lambda function `vm-metrics`: see `functions::handlers::vm_metrics`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::vm_metrics::handle).await
}
