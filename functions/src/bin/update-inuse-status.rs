//! Lambda function `update-inuse-status`: see `functions::handlers::update_inuse_status`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::update_inuse_status::handle).await
}
