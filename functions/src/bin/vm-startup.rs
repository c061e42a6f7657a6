//! Lambda function `vm-startup`: see `functions::handlers::vm_startup`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::vm_startup::handle).await
}
