//! Adapters: implementations of the ports, grouped by where they run. `local/` is local
//! mode (SQLite, agent processes, in-process queues); `aws/` is the deployment (DynamoDB,
//! SQS, EC2; feature `aws`). Beside them, what both use: the command-log decorators
//! (`audited`), the clock, the null objects for ports a Lambda function is not granted,
//! the assignment notifiers, and the Vast.ai provider with its offer cache.

pub mod audited;
#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod local;
pub mod not_granted;
pub mod notifier;
pub mod offer_cache;
pub mod vast;

pub use audited::{AuditedCloud, AuditedCompute, CommandLogger, Dialect};
#[cfg(feature = "aws")]
pub use aws::{DynamoStore, Ec2Cloud, Ec2Compute, Ec2Config, Ec2Network, S3WorkStore, SqsQueue};
pub use clock::{OffsetClock, SystemClock};
#[cfg(feature = "sqlite")]
pub use local::{DurableJobWorker, DurableQueue, SqliteStore};
pub use local::{
    InProcessQueue, JobWorker, LocalCloud, LocalCompute, LocalComputeConfig, LocalWorkStore,
};
pub use not_granted::{NoNetwork, NotGranted};
pub use notifier::{InProcessNotifier, PollingNotifier};
pub use vast::VastCloud;
