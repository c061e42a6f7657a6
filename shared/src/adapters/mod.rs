//! Adapters: implementations of the ports. Local mode uses SQLite (feature `sqlite`), agent
//! processes and an in-process notifier; AWS adapters (feature `aws`: DynamoDB, SQS, EC2)
//! sit beside these.

pub mod audited;
pub mod clock;
#[cfg(feature = "sqlite")]
pub mod durable_queue;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
pub mod ec2;
#[cfg(feature = "aws")]
pub mod ec2_cloud;
#[cfg(feature = "aws")]
pub mod ec2_network;
pub mod in_process_queue;
pub mod local_cloud;
pub mod local_compute;
pub mod not_granted;
pub mod notifier;
pub mod offer_cache;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;
pub mod vast;

pub use audited::{AuditedCloud, AuditedCompute, CommandLogger, Dialect};
pub use clock::{OffsetClock, SystemClock};
#[cfg(feature = "sqlite")]
pub use durable_queue::{DurableJobWorker, DurableQueue};
#[cfg(feature = "aws")]
pub use dynamodb::DynamoStore;
#[cfg(feature = "aws")]
pub use ec2::{Ec2Compute, Ec2Config};
#[cfg(feature = "aws")]
pub use ec2_cloud::Ec2Cloud;
#[cfg(feature = "aws")]
pub use ec2_network::Ec2Network;
pub use in_process_queue::{InProcessQueue, JobWorker};
pub use local_cloud::LocalCloud;
pub use local_compute::{LocalCompute, LocalComputeConfig};
pub use not_granted::{NoNetwork, NotGranted};
pub use notifier::{InProcessNotifier, PollingNotifier};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
#[cfg(feature = "aws")]
pub use sqs::SqsQueue;
pub use vast::VastCloud;
