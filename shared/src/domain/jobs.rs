//! Work queued for the provisioner: small, versioned messages with a `kind` field.

use serde::{Deserialize, Serialize};

/// Version of the message format; a provisioner refuses versions it does not know.
pub const JOB_VERSION: u32 = 1;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Start the machine for a recorded VM.
    LaunchVm {
        operation_id: String,
        hostname: String,
        /// The VM's bearer token, for its user_data. It travels only in this message (an
        /// encrypted queue that only the provisioner reads); the store keeps its hash.
        token: String,
        /// A machine of a provisioning request: its instance type and lease.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<LeaseLaunch>,
    },
    /// Plan and launch the machines of a GPU provisioning request.
    ProvisionRequest { request_id: String },
}

/// What a launch of a provisioning request's machine adds to a VM launch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseLaunch {
    pub request_id: String,
    pub instance_type: String,
    /// RFC 3339, tagged on the machine: the latest its lease can end.
    pub expires_at: String,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::LaunchVm {
                operation_id,
                hostname,
                ..
            } => write!(f, "LaunchVm({operation_id}, {hostname})"),
            Job::ProvisionRequest { request_id } => write!(f, "ProvisionRequest({request_id})"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    job: Job,
}

impl Job {
    pub fn to_message(&self) -> String {
        serde_json::to_string(&Envelope {
            v: JOB_VERSION,
            job: self.clone(),
        })
        .unwrap_or_default()
    }

    /// Parses a message; a malformed or unknown-version message is an error (a poison
    /// message: retrying cannot fix it).
    pub fn from_message(body: &str) -> Result<Job, String> {
        let envelope: Envelope =
            serde_json::from_str(body).map_err(|e| format!("not a job message: {e}"))?;
        if envelope.v != JOB_VERSION {
            return Err(format!("unknown job message version {}", envelope.v));
        }
        Ok(envelope.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_poison() {
        let job = Job::LaunchVm {
            operation_id: "op".into(),
            hostname: "vm-1".into(),
            token: "secret".into(),
            lease: None,
        };
        let message = job.to_message();
        assert!(message.contains("\"kind\":\"launch_vm\"") && message.contains("\"v\":1"));
        assert_eq!(Job::from_message(&message).unwrap(), job);
        assert!(
            !format!("{job:?}").contains("secret"),
            "Debug hides the token"
        );
        assert!(Job::from_message("{").is_err());
        assert!(Job::from_message(
            r#"{"v":2,"kind":"launch_vm","operation_id":"o","hostname":"h","token":"t"}"#
        )
        .is_err());
        assert!(Job::from_message(r#"{"v":1,"kind":"mine_bitcoin"}"#).is_err());
    }
}
