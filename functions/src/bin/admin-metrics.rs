//! Lambda function `admin-metrics`: see `functions::handlers::admin_metrics`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::admin_metrics::handle).await
}
