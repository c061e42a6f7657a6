//! Answers several VM-agent handlers share.

use serde::Serialize;
use utoipa::ToSchema;

/// A VM's report was recorded.
#[derive(Serialize, ToSchema)]
pub struct VmReportAccepted {
    /// What was recorded, for the agent's log.
    pub message: String,
}

impl VmReportAccepted {
    pub fn new(message: &str) -> Self {
        VmReportAccepted {
            message: message.to_string(),
        }
    }
}
