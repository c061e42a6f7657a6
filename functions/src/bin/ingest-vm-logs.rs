//! Lambda function `ingest-vm-logs`: see `functions::handlers::ingest_vm_logs`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::ingest_vm_logs::handle).await
}
