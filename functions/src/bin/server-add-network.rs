//! Lambda function `server-add-network` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("server-add-network")
}
