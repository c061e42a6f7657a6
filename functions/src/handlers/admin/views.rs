//! Answers shared by several admin handlers.

use serde::Serialize;
use shared::domain::Operation;
use utoipa::ToSchema;

/// A launch or destroy, as answered to JSON clients.
#[derive(Serialize, ToSchema)]
pub struct OperationOutcome {
    /// The operation's id (`GET /api/operations/{id}` follows it).
    pub operation_id: String,
    pub operation: Operation,
}

impl OperationOutcome {
    pub fn new(operation: Operation) -> Self {
        OperationOutcome {
            operation_id: operation.id.clone(),
            operation,
        }
    }
}
