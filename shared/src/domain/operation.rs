//! Admin operations (launch, destroy): one runs at a time, and each is recorded so its
//! progress can be shown and a second one refused.

use serde::{Deserialize, Serialize};

use super::vm::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Launch,
    Destroy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationStatus {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operation {
    pub id: String,
    pub kind: OperationKind,
    pub status: OperationStatus,
    /// The VMs this operation is about.
    pub hostnames: Vec<String>,
    /// What went wrong, per VM or overall.
    pub errors: Vec<String>,
    /// A destroy's final sync of participants' work, per VM (empty when nothing is
    /// collected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collected: Vec<super::collect::FinalSync>,
    /// Unix milliseconds.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// Unix milliseconds; null while it runs.
    #[schema(value_type = Option<i64>)]
    pub finished_at: Option<Millis>,
}

impl Operation {
    pub fn start(kind: OperationKind, now: Millis) -> Self {
        Operation {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            status: OperationStatus::Running,
            hostnames: Vec::new(),
            errors: Vec::new(),
            collected: Vec::new(),
            created_at: now,
            finished_at: None,
        }
    }

    pub fn finish(&mut self, now: Millis) {
        self.status = if self.errors.is_empty() {
            OperationStatus::Succeeded
        } else {
            OperationStatus::Failed
        };
        self.finished_at = Some(now);
    }
}
