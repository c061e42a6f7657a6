//! Lambda function `unassigned-vms-count` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("unassigned-vms-count")
}
