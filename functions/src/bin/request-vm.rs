//! Lambda function `request-vm`: see `functions::handlers::request_vm`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::request_vm::handle).await
}
