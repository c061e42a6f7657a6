//! Lambda function `execute-runpod-launch` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("execute-runpod-launch")
}
