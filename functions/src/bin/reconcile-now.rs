//! Lambda function `reconcile-now`: see `functions::handlers::reconcile`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::lambda::run(functions::handlers::reconcile::handle).await
}
