//! Lambda function `report-vm-status`: see `functions::handlers::report_vm_status`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::report_vm_status::handle).await
}
