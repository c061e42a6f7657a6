//! Lambda function `update-inuse-status` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("update-inuse-status")
}
