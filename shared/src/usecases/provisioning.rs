//! The provisioner: turns queued jobs into machines. The same function runs in the
//! provisioning Lambda (SQS) and in local mode's in-process queue.
//!
//! Two-phase and idempotent: the VM record exists before any cloud call; a launch whose
//! record already has an instance is skipped; a redelivered launch first adopts a machine
//! an earlier attempt may have started (tagged with the hostname), and every launch
//! carries a client token derived from the operation and hostname.

use crate::domain::{Job, LeaseLaunch, VmChange, VmStatus, VmToken};
use crate::error::Result;
use crate::ports::{LaunchError, LaunchSpec, LeaseTags, Market};

/// What the provisioner uses: the same ports as a GPU request's lease (the store, the queue
/// a request's provisioning fills, the compute provider that launches, the time and the
/// settings), since it provisions those requests too.
pub type Provisioner<'a> = super::requests::Leases<'a>;

/// How a job ended.
#[derive(Debug, PartialEq)]
pub enum JobOutcome {
    /// Finished (launched, adopted, skipped, or failed for good and recorded so).
    Done,
    /// Worth another try later (capacity, throttling, a store or network error).
    Retry(String),
}

/// Client token for EC2's RunInstances: stable per VM launch and market, unique by
/// construction (a hash of all three, so no length of hostname can make two collide after
/// a cut), and within EC2's 64 ASCII characters.
pub(crate) fn client_token(operation_id: &str, hostname: &str, market: Market) -> String {
    use sha2::{Digest, Sha256};
    let suffix = match market {
        Market::OnDemand => "od",
        Market::Spot => "sp",
    };
    let digest = Sha256::new()
        .chain_update(operation_id.as_bytes())
        .chain_update([0])
        .chain_update(hostname.as_bytes())
        .chain_update([0])
        .chain_update(suffix.as_bytes())
        .finalize();
    // 28 bytes of SHA-256 (224 bits): collisions are out of reach.
    format!("{suffix}-{}", hex::encode(&digest[..28]))
}

/// Runs one job. `attempt` counts deliveries (1 = first); the last allowed attempt turns a
/// retryable failure into a recorded `error` so nothing stays `initializing` forever.
pub async fn run_job(state: Provisioner<'_>, job: &Job, attempt: u32) -> JobOutcome {
    match job {
        Job::ProvisionRequest { request_id } => {
            match super::requests::provision(state, request_id).await {
                Ok(()) => JobOutcome::Done,
                Err(e) => {
                    tracing::error!(%request_id, error = ?e, "provisioning job failed");
                    JobOutcome::Retry(e.to_string())
                }
            }
        }
        Job::LaunchVm {
            operation_id,
            hostname,
            token,
            lease,
        } => match launch_vm(
            state,
            operation_id,
            hostname,
            token,
            lease.as_ref(),
            attempt,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(%hostname, error = ?e, "launch job failed");
                give_up_or_retry(state, hostname, attempt, format!("{e}")).await
            }
        },
    }
}

async fn give_up_or_retry(
    state: Provisioner<'_>,
    hostname: &str,
    attempt: u32,
    reason: String,
) -> JobOutcome {
    if attempt < state.config.launch_attempts {
        return JobOutcome::Retry(reason);
    }
    let failed = VmChange::Failed(format!("launch failed after {attempt} attempts: {reason}"));
    match state
        .store
        .update_vm(hostname, &failed, state.clock.now_millis())
        .await
    {
        Ok(_) => JobOutcome::Done,
        Err(e) => JobOutcome::Retry(format!("could not record the failure: {e}")),
    }
}

async fn launch_vm(
    state: Provisioner<'_>,
    operation_id: &str,
    hostname: &str,
    token: &str,
    lease: Option<&LeaseLaunch>,
    attempt: u32,
) -> Result<JobOutcome> {
    let Some(vm) = state.store.get_vm(hostname).await? else {
        return Ok(JobOutcome::Done); // destroyed before it was launched
    };
    if vm.instance_id.is_some() || vm.status != VmStatus::Initializing {
        return Ok(JobOutcome::Done); // launched already, or failed and recorded
    }
    let now = state.clock.now_millis();
    if attempt > 1 {
        if let Some(instance) = state.compute.find_by_hostname(hostname).await? {
            tracing::info!(%hostname, instance = %instance.id, "adopting the machine of an earlier attempt");
            let change = super::costs::launched(
                state.store,
                state.compute,
                state.config,
                &vm,
                instance.id,
                lease.map(|l| l.instance_type.as_str()),
                state.config.market,
            )
            .await?;
            state.store.update_vm(hostname, &change, now).await?;
            return Ok(JobOutcome::Done);
        }
    }
    let api_url = state
        .config
        .api_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("GPUFLEET_API_URL is not configured"))?;
    let mut spec = LaunchSpec {
        hostname: hostname.to_string(),
        token: VmToken::from_plain(token.to_string()),
        allocator_url: api_url,
        operation_id: operation_id.to_string(),
        client_token: client_token(operation_id, hostname, state.config.market),
        market: state.config.market,
        instance_type: lease.map(|l| l.instance_type.clone()),
        lease: lease.map(|l| LeaseTags {
            request_id: l.request_id.clone(),
            expires_at: l.expires_at.clone(),
        }),
        image: None,
        pool: None,
    };
    let mut result = state.compute.launch(&spec).await;
    if let Err(LaunchError::Capacity(why)) = &result {
        if spec.market == Market::Spot && state.config.spot_fallback {
            tracing::warn!(%hostname, reason = %why, "no spot capacity; falling back to on-demand");
            spec.market = Market::OnDemand;
            spec.client_token = client_token(operation_id, hostname, Market::OnDemand);
            result = state.compute.launch(&spec).await;
        }
    }
    match result {
        Ok(instance_id) => {
            tracing::info!(%hostname, %instance_id, market = spec.market.as_str(), "launched");
            let change = super::costs::launched(
                state.store,
                state.compute,
                state.config,
                &vm,
                instance_id.clone(),
                spec.instance_type.as_deref(),
                spec.market,
            )
            .await?;
            let recorded = state
                .store
                .update_vm(hostname, &change, state.clock.now_millis())
                .await;
            match recorded {
                Ok(_) => Ok(JobOutcome::Done),
                // Destroyed while we launched: end the machine now rather than leave it to
                // the next reconcile.
                Err(crate::Error::NotFound(_)) => {
                    tracing::warn!(%hostname, %instance_id, "VM was destroyed during its launch; terminating");
                    state.compute.terminate(&[instance_id]).await?;
                    Ok(JobOutcome::Done)
                }
                Err(e) => Err(e),
            }
        }
        Err(LaunchError::Rejected(reason)) => {
            state
                .store
                .update_vm(
                    hostname,
                    &VmChange::Failed(format!("launch refused: {reason}")),
                    state.clock.now_millis(),
                )
                .await?;
            Ok(JobOutcome::Done)
        }
        Err(e) => Ok(give_up_or_retry(state, hostname, attempt, e.to_string()).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_and_short() {
        let a = client_token(
            "0f8e2c1a-1111-2222-3333-444455556666",
            "gpufleet-vm-1234abcd",
            Market::Spot,
        );
        assert_eq!(
            a,
            client_token(
                "0f8e2c1a-1111-2222-3333-444455556666",
                "gpufleet-vm-1234abcd",
                Market::Spot
            )
        );
        assert_ne!(
            a,
            client_token(
                "0f8e2c1a-1111-2222-3333-444455556666",
                "gpufleet-vm-1234abcd",
                Market::OnDemand
            )
        );
        assert!(a.len() <= 64);
    }

    #[test]
    fn client_tokens_are_unique_for_every_allowed_prefix_length() {
        // `GPUFLEET_VM_PREFIX` may be 1 to 40 characters; hostnames are `<prefix>-<8 hex>`.
        let mut seen = std::collections::HashSet::new();
        for len in 1..=40 {
            let prefix = "p".repeat(len);
            for operation in ["0f8e2c1a-1111-2222-3333-444455556666", "op-2"] {
                for n in 0..50u32 {
                    let hostname = format!("{prefix}-{n:08x}");
                    for market in [Market::Spot, Market::OnDemand] {
                        let token = client_token(operation, &hostname, market);
                        assert!(token.len() <= 64 && token.is_ascii(), "{token}");
                        assert!(seen.insert(token), "collision at prefix length {len}");
                    }
                }
            }
        }
        assert_eq!(seen.len(), 40 * 2 * 50 * 2);
    }
}
