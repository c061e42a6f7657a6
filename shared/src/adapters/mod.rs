//! Adapters: implementations of the ports. Local mode uses SQLite, agent processes and an
//! in-process notifier; AWS adapters (DynamoDB, SQS, EC2) sit beside these.

pub mod clock;
pub mod dynamodb;
pub mod ec2;
pub mod in_process_queue;
pub mod local_compute;
pub mod notifier;
pub mod sqlite;
pub mod sqs;

pub use clock::SystemClock;
pub use dynamodb::DynamoStore;
pub use ec2::{Ec2Compute, Ec2Config};
pub use in_process_queue::{InProcessQueue, JobWorker};
pub use local_compute::{LocalCompute, LocalComputeConfig};
pub use notifier::{InProcessNotifier, PollingNotifier};
pub use sqlite::SqliteStore;
pub use sqs::SqsQueue;
