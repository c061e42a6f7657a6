//! Lambda function `reissue-seat` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("reissue-seat")
}
