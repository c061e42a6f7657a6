//! Lambda function `logs-subscriber` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("logs-subscriber")
}
