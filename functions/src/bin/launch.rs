//! Lambda function `launch`: see `functions::handlers::launch`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::launch::handle).await
}
