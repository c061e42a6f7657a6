//! Lambda function `list-images` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("list-images")
}
