//! Lambda function `unassigned-vms-count`: see `functions::handlers::unassigned_vms_count`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::unassigned_vms_count::handle).await
}
