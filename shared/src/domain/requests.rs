//! GPU provisioning requests ("4 GPUs for 2 hours"): validation, the lease state machine,
//! and how a GPU count becomes machines.

use serde::{Deserialize, Serialize};

use super::vm::Millis;
use crate::error::{Error, Result};

/// The largest `gpu_count` one request may ask for.
pub const MAX_GPUS_PER_REQUEST: u32 = 8;
/// Longest `user_id`.
pub const MAX_USER_ID_CHARS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Recorded and queued.
    Pending,
    /// Machines are being launched.
    Provisioning,
    /// Every machine is up and its agent reported; `access` is filled; the lease runs.
    Completed,
    /// Could not be provisioned (`error_msg` says why); machines ended.
    Failed,
    /// The lease ran out; machines ended (verified).
    Expired,
    /// Ended early by its owner; machines ended (verified).
    Released,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Provisioning => "provisioning",
            RequestStatus::Completed => "completed",
            RequestStatus::Failed => "failed",
            RequestStatus::Expired => "expired",
            RequestStatus::Released => "released",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        Ok(match raw {
            "pending" => RequestStatus::Pending,
            "provisioning" => RequestStatus::Provisioning,
            "completed" => RequestStatus::Completed,
            "failed" => RequestStatus::Failed,
            "expired" => RequestStatus::Expired,
            "released" => RequestStatus::Released,
            other => {
                return Err(Error::validation(format!(
                    "unknown request status {other:?}"
                )))
            }
        })
    }

    /// Counts against its user's GPU quota.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RequestStatus::Pending | RequestStatus::Provisioning | RequestStatus::Completed
        )
    }

    /// The lease state machine: forward only, and an ended request stays ended.
    pub fn can_become(self, next: RequestStatus) -> bool {
        use RequestStatus::*;
        matches!(
            (self, next),
            (Pending, Provisioning)
                | (Provisioning, Completed)
                | (Pending | Provisioning | Completed, Failed | Released)
                | (Completed, Expired)
        )
    }
}

/// How to reach a completed request's machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseAccess {
    pub ssh_user: String,
    pub hosts: Vec<LeaseHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseHost {
    pub hostname: String,
    pub instance_id: String,
    pub instance_type: String,
    pub gpus: u32,
    pub address: Option<String>,
}

/// One request, as every store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRequest {
    pub request_id: String,
    pub user_id: String,
    pub gpu_count: u32,
    pub duration_hours: u32,
    pub status: RequestStatus,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub completed_at: Option<Millis>,
    /// When the lease ends: completion plus `duration_hours`.
    pub expires_at: Option<Millis>,
    pub error_msg: Option<String>,
    /// The machines planned for it (hostnames of their VM records).
    pub hosts: Vec<String>,
    pub access: Option<LeaseAccess>,
    pub kubeconfig: Option<String>,
    /// What its start holds of its user's monthly budget.
    #[serde(default)]
    pub budget_hold: Option<crate::domain::costs::BudgetHold>,
}

impl GpuRequest {
    pub fn new(id: String, input: &NewRequest, now: Millis) -> Self {
        GpuRequest {
            request_id: id,
            user_id: input.user_id.clone(),
            gpu_count: input.gpu_count,
            duration_hours: input.duration_hours,
            status: RequestStatus::Pending,
            created_at: now,
            updated_at: now,
            completed_at: None,
            expires_at: None,
            error_msg: None,
            hosts: Vec::new(),
            access: None,
            kubeconfig: None,
            budget_hold: None,
        }
    }
}

/// A change to a request; [`RequestChange::apply`] enforces the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestChange {
    Provisioning { hosts: Vec<String> },
    Completed { access: LeaseAccess },
    Failed { error_msg: String },
    Expired,
    Released,
}

impl RequestChange {
    pub fn target(&self) -> RequestStatus {
        match self {
            RequestChange::Provisioning { .. } => RequestStatus::Provisioning,
            RequestChange::Completed { .. } => RequestStatus::Completed,
            RequestChange::Failed { .. } => RequestStatus::Failed,
            RequestChange::Expired => RequestStatus::Expired,
            RequestChange::Released => RequestStatus::Released,
        }
    }

    /// Applies the change, or says why it cannot happen (409).
    pub fn apply(&self, r: &mut GpuRequest, now: Millis) -> Result<()> {
        let next = self.target();
        if !r.status.can_become(next) {
            return Err(Error::Conflict(format!(
                "request {} is {}; it cannot become {}",
                r.request_id,
                r.status.as_str(),
                next.as_str()
            )));
        }
        match self {
            RequestChange::Provisioning { hosts } => r.hosts = hosts.clone(),
            RequestChange::Completed { access } => {
                r.access = Some(access.clone());
                r.completed_at = Some(now);
                r.expires_at = Some(now + i64::from(r.duration_hours) * 3_600_000);
            }
            RequestChange::Failed { error_msg } => {
                r.error_msg = Some(error_msg.clone());
                r.completed_at.get_or_insert(now);
            }
            RequestChange::Expired | RequestChange::Released => {}
        }
        r.status = next;
        r.updated_at = now;
        Ok(())
    }
}

/// A validated `POST /api/v1/requests` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub user_id: String,
    pub gpu_count: u32,
    pub duration_hours: u32,
}

impl NewRequest {
    /// Validates a JSON body; every message names the field and the rule.
    pub fn parse(body: &serde_json::Value, max_duration_hours: u32) -> Result<Self> {
        let object = body
            .as_object()
            .ok_or_else(|| Error::validation("the body must be a JSON object"))?;
        let user_id = match object.get("user_id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::validation("user_id must be a string")),
            None => return Err(Error::validation("user_id is required")),
        };
        let chars = user_id.chars().count();
        if chars == 0 || chars > MAX_USER_ID_CHARS {
            return Err(Error::validation(format!(
                "user_id must be 1-{MAX_USER_ID_CHARS} characters (got {chars})"
            )));
        }
        if user_id.chars().any(char::is_control) {
            return Err(Error::validation(
                "user_id must not contain control characters",
            ));
        }
        let gpu_count = integer(object, "gpu_count")?;
        if !(1..=i64::from(MAX_GPUS_PER_REQUEST)).contains(&gpu_count) {
            return Err(Error::validation(format!(
                "gpu_count must be between 1 and {MAX_GPUS_PER_REQUEST} (got {gpu_count})"
            )));
        }
        let duration_hours = integer(object, "duration_hours")?;
        if !(1..=i64::from(max_duration_hours)).contains(&duration_hours) {
            return Err(Error::validation(format!(
                "duration_hours must be between 1 and {max_duration_hours} (got {duration_hours})"
            )));
        }
        Ok(NewRequest {
            user_id,
            // In range, checked above.
            gpu_count: gpu_count as u32,
            duration_hours: duration_hours as u32,
        })
    }
}

fn integer(object: &serde_json::Map<String, serde_json::Value>, name: &str) -> Result<i64> {
    match object.get(name) {
        None | Some(serde_json::Value::Null) => {
            Err(Error::validation(format!("{name} is required")))
        }
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| Error::validation(format!("{name} must be a whole number"))),
        Some(_) => Err(Error::validation(format!("{name} must be an integer"))),
    }
}

/// A machine size: an instance type and the GPUs it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuShape {
    pub instance_type: String,
    pub gpus: u32,
}

/// The machines for `gpu_count` GPUs: the fewest machines with exactly that many GPUs,
/// largest shapes first (4 → one 4-GPU machine; 6 → 4 + 1 + 1). `shapes` must include a
/// 1-GPU shape so every count can be met exactly.
pub fn plan_machines(gpu_count: u32, shapes: &[GpuShape]) -> Result<Vec<GpuShape>> {
    let mut sorted: Vec<&GpuShape> = shapes.iter().filter(|s| s.gpus > 0).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.gpus));
    if !sorted.iter().any(|s| s.gpus == 1) {
        return Err(Error::Internal(anyhow::anyhow!(
            "the GPU shape catalogue has no 1-GPU instance type"
        )));
    }
    let mut left = gpu_count;
    let mut plan = Vec::new();
    for shape in sorted {
        while left >= shape.gpus {
            plan.push(shape.clone());
            left -= shape.gpus;
        }
    }
    Ok(plan)
}

/// The refusal of a request or an instance over the user's GPU quota (one quota covers
/// both APIs, and both say so the same way).
pub fn over_quota_message(gpu_count: u32, in_use: u32, quota: u32) -> String {
    format!(
        "gpu_count {gpu_count} would exceed your GPU quota: {in_use} of {quota} GPUs are in use by your active requests and instances"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_table() {
        let ok = |v: serde_json::Value| NewRequest::parse(&v, 72);
        assert!(ok(json!({"user_id": "alice", "gpu_count": 1, "duration_hours": 1})).is_ok());
        assert!(
            ok(json!({"user_id": "a".repeat(50), "gpu_count": 8, "duration_hours": 72})).is_ok()
        );
        for (body, needle) in [
            (
                json!({"user_id": "", "gpu_count": 1, "duration_hours": 1}),
                "user_id must be 1-50",
            ),
            (
                json!({"user_id": "a".repeat(51), "gpu_count": 1, "duration_hours": 1}),
                "(got 51)",
            ),
            (
                json!({"user_id": 7, "gpu_count": 1, "duration_hours": 1}),
                "user_id must be a string",
            ),
            (
                json!({"gpu_count": 1, "duration_hours": 1}),
                "user_id is required",
            ),
            (
                json!({"user_id": "a", "gpu_count": 0, "duration_hours": 1}),
                "between 1 and 8 (got 0)",
            ),
            (
                json!({"user_id": "a", "gpu_count": 9, "duration_hours": 1}),
                "between 1 and 8 (got 9)",
            ),
            (
                json!({"user_id": "a", "gpu_count": "2", "duration_hours": 1}),
                "gpu_count must be an integer",
            ),
            (
                json!({"user_id": "a", "gpu_count": 1.5, "duration_hours": 1}),
                "gpu_count must be a whole",
            ),
            (
                json!({"user_id": "a", "gpu_count": 1, "duration_hours": 0}),
                "duration_hours must be between",
            ),
            (
                json!({"user_id": "a", "gpu_count": 1, "duration_hours": 73}),
                "(got 73)",
            ),
            (
                json!({"user_id": "a", "gpu_count": 1}),
                "duration_hours is required",
            ),
            (json!([1, 2]), "JSON object"),
        ] {
            let err = ok(body.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn state_machine() {
        use RequestStatus::*;
        assert!(Pending.can_become(Provisioning));
        assert!(Completed.can_become(Expired));
        assert!(!Pending.can_become(Expired));
        for ended in [Failed, Expired, Released] {
            assert!(!ended.is_active());
            for next in [Pending, Provisioning, Completed, Failed, Expired, Released] {
                assert!(!ended.can_become(next), "{ended:?} -> {next:?}");
            }
        }
    }

    #[test]
    fn completion_starts_the_lease() {
        let input = NewRequest {
            user_id: "a".into(),
            gpu_count: 1,
            duration_hours: 2,
        };
        let mut r = GpuRequest::new("id".into(), &input, 0);
        RequestChange::Provisioning {
            hosts: vec!["h".into()],
        }
        .apply(&mut r, 10)
        .unwrap();
        let access = LeaseAccess {
            ssh_user: "ubuntu".into(),
            hosts: vec![],
        };
        RequestChange::Completed { access }
            .apply(&mut r, 1_000)
            .unwrap();
        assert_eq!(r.expires_at, Some(1_000 + 2 * 3_600_000));
        assert!(RequestChange::Provisioning { hosts: vec![] }
            .apply(&mut r, 2_000)
            .is_err());
    }

    #[test]
    fn plans_exactly_the_gpus_with_the_fewest_machines() {
        let shapes = [
            GpuShape {
                instance_type: "one".into(),
                gpus: 1,
            },
            GpuShape {
                instance_type: "four".into(),
                gpus: 4,
            },
            GpuShape {
                instance_type: "eight".into(),
                gpus: 8,
            },
        ];
        for (n, expected) in [
            (1, vec!["one"]),
            (4, vec!["four"]),
            (6, vec!["four", "one", "one"]),
            (8, vec!["eight"]),
        ] {
            let plan = plan_machines(n, &shapes).unwrap();
            let names: Vec<&str> = plan.iter().map(|s| s.instance_type.as_str()).collect();
            assert_eq!(names, expected);
            assert_eq!(plan.iter().map(|s| s.gpus).sum::<u32>(), n);
        }
        assert!(plan_machines(2, &shapes[1..]).is_err());
    }
}
