//! Lambda function `get-operation`: see `functions::handlers::get_operation`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::get_operation::handle).await
}
