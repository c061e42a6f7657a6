//! Lambda function `admin-instances`: see `functions::handlers::admin_instances`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::admin_instances::handle).await
}
