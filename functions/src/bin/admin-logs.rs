//! Lambda function `admin-logs`: see `functions::handlers::admin_logs`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::admin_logs::handle).await
}
