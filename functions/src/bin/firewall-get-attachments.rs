//! Lambda function `firewall-get-attachments` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("firewall-get-attachments")
}
