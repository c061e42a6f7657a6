//! Lambda function `push-vm-logs`: see `functions::handlers::push_vm_logs`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::push_vm_logs::handle).await
}
