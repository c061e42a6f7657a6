//! Lambda function `reconcile-now` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("reconcile-now")
}
