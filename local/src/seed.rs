//! `gpufleet seed-vms`: registers N running, healthy VMs straight into the embedded store,
//! with no agent behind them, and writes their tokens to a file. For benchmarks and for
//! trying the claim page without launching anything. With no agent heartbeating, they stay
//! assignable only for the heartbeat window (`GPUFLEET_HEARTBEAT_TIMEOUT_SECONDS`).

use std::path::Path;

use anyhow::Context as _;
use serde_json::json;
use shared::adapters::{SqliteStore, SystemClock};
use shared::domain::{GpuHealth, Vm, VmChange, VmStatus, VmToken};
use shared::ports::{Clock, VmStore};

/// Inserts `count` VMs named `<prefix>-<n>`; returns `[{hostname, token}]`.
pub async fn seed_vms(
    data_dir: &Path,
    prefix: &str,
    count: u32,
) -> anyhow::Result<serde_json::Value> {
    let store = SqliteStore::open(data_dir)?;
    let now = SystemClock.now_millis();
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let hostname = format!("{prefix}-{i:06}");
        let token = VmToken::generate();
        store
            .insert_vm(&Vm::new(hostname.clone(), token.hash(), now))
            .await
            .with_context(|| format!("inserting {hostname}"))?;
        store
            .update_vm(&hostname, &VmChange::Status(VmStatus::Running), now)
            .await?;
        store
            .update_vm(&hostname, &VmChange::GpuHealth(GpuHealth::Healthy), now)
            .await?;
        out.push(json!({"hostname": hostname, "token": token.as_str()}));
    }
    Ok(out.into())
}
