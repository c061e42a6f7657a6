//! Lambda function `list-vm-status`: see `functions::handlers::list_vm_status`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::list_vm_status::handle).await
}
