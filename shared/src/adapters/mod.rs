//! Adapters: implementations of the ports. Local mode uses SQLite, agent processes and an
//! in-process notifier; AWS adapters (DynamoDB, SQS, EC2) sit beside these.

pub mod clock;
pub mod dynamodb;
pub mod local_compute;
pub mod notifier;
pub mod sqlite;

pub use clock::SystemClock;
pub use dynamodb::DynamoStore;
pub use local_compute::{LocalCompute, LocalComputeConfig};
pub use notifier::{InProcessNotifier, PollingNotifier};
pub use sqlite::SqliteStore;
