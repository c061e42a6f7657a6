//! Lambda function `get-vm-status` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("get-vm-status")
}
