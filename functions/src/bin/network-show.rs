//! Lambda function `network-show` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("network-show")
}
