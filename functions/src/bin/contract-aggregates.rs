//! Lambda function `contract-aggregates` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("contract-aggregates")
}
