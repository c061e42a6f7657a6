//! Lambda function `destroy`: see `functions::handlers::destroy`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::destroy::handle).await
}
