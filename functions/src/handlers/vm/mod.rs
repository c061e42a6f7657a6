//! What a VM's agent calls with its own token: the assignment long-poll, status, GPU health, in-use, metrics and logs.

pub mod gpu_health;
pub mod ingest_vm_logs;
pub mod push_vm_logs;
pub mod report_vm_status;
pub mod update_inuse_status;
pub mod views;
pub mod vm_metrics;
pub mod vm_startup;
