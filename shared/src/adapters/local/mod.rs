//! The local-mode adapters: SQLite for every store port (feature `sqlite`), job queues in
//! the process (durable on SQLite), agent processes as VMs, and placeholder processes as
//! the offers/instances provider.

pub mod cloud;
pub mod compute;
#[cfg(feature = "sqlite")]
pub mod durable_queue;
pub mod in_process_queue;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod work_store;

pub use cloud::LocalCloud;
pub use compute::{LocalCompute, LocalComputeConfig};
#[cfg(feature = "sqlite")]
pub use durable_queue::{DurableJobWorker, DurableQueue};
pub use in_process_queue::{InProcessQueue, JobWorker};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use work_store::LocalWorkStore;
