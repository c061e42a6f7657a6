//! Lambda function `get-vm-status`: see `functions::handlers::get_vm_status`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::get_vm_status::handle).await
}
