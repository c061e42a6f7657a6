//! Participants' work: what a VM's agent calls to sync its files, and what the admin calls
//! to download or delete everything collected.

pub mod collect_done;
pub mod collect_plan;
pub mod delete_collected;
pub mod scp_client;
