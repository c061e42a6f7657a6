//! Lambda function `admin-dashboard`: see `functions::handlers::admin_dashboard`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::admin_dashboard::handle).await
}
