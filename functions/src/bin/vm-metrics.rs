//! Lambda function `vm-metrics` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("vm-metrics")
}
