//! Lambda function `home`: see `functions::handlers::home`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::home::handle).await
}
