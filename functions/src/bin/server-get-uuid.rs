//! Lambda function `server-get-uuid` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("server-get-uuid")
}
