//! Lambda function `gpu-health`: see `functions::handlers::gpu_health`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::gpu_health::handle).await
}
