//! Lambda function `firewall-update-attachments` (see `functions::catalog` and `functions::routes`).

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main("firewall-update-attachments")
}
