//! Lambda function `get-vm-logs`: see `functions::handlers::get_vm_logs`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::get_vm_logs::handle).await
}
