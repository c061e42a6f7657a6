//! Lambda function `push-vm-logs` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("push-vm-logs")
}
