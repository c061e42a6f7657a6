//! Domain types. Values are parsed at the boundary into these types ("parse, don't
//! validate"), so the use cases only ever see well-formed data.

pub mod api_keys;
pub mod collect;
pub mod command_log;
pub mod costs;
pub mod crd;
pub mod email;
pub mod instances;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod offers;
pub mod operation;
pub mod pools;
pub mod requests;
pub mod secrets;
pub mod vm;
pub mod zip;

pub use api_keys::ApiKey;
pub use crd::CrdCommand;
pub use email::Email;
pub use jobs::{Job, LeaseLaunch};
pub use metrics::{StageTiming, StartupMetrics};
pub use operation::{Operation, OperationKind, OperationStatus};
pub use requests::{GpuRequest, LeaseAccess, LeaseHost, NewRequest, RequestChange, RequestStatus};
pub use secrets::{Pin, SeatToken, TokenHash, VmToken};
pub use vm::{AssignableRule, Assignment, GpuHealth, Liveness, Millis, Vm, VmChange, VmStatus};

/// Formats epoch milliseconds as RFC 3339 UTC (empty for times out of range).
pub fn rfc3339(millis: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
