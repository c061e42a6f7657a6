//! Lambda function `revoke-api-key` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("revoke-api-key")
}
