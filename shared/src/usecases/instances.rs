//! GPU offers and the instances created from them, across providers (aws_ec2, vast_ai,
//! local). Records are written before a provider is called and every machine carries its
//! record's id, so reconcile can end any machine that outlives its record.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::domain::api_keys::Caller;
use crate::domain::instances::{CloudInstance, InstanceStatus, NewInstance, ProviderInstance};
use crate::domain::offers::{Offer, OfferQuery};
use crate::error::{Error, Result};
use crate::ports::Clock;
use crate::ports::{CreateInstanceOutcome, CreateInstanceSpec, GpuCloud, Idempotency, LaunchError};
use crate::state::Clouds;
use crate::AppState;

/// What the instances API's use cases use: the instance records, the GPU clouds, the
/// time and the settings.
#[derive(Clone, Copy)]
pub struct Instances<'a> {
    pub store: &'a dyn crate::ports::Store,
    pub clouds: &'a Clouds,
    pub clock: &'a dyn Clock,
    pub config: &'a Config,
}

impl<'a> From<&'a AppState> for Instances<'a> {
    fn from(state: &'a AppState) -> Self {
        Instances {
            store: &*state.store,
            clouds: &state.clouds,
            clock: &*state.clock,
            config: &state.config,
        }
    }
}

/// The providers this deployment has credentials for.
pub fn providers(state: Instances<'_>) -> Vec<&'static str> {
    state.clouds.names()
}

fn cloud<'a>(state: Instances<'a>, name: &str) -> Result<&'a std::sync::Arc<dyn GpuCloud>> {
    state.clouds.get(name).ok_or_else(|| {
        Error::validation(format!(
            "provider {name:?} is not configured here; GET /api/v1/providers lists those that are"
        ))
    })
}

/// Offers from every provider (or the one asked for), filtered and sorted by `query`. A
/// provider that fails is left out (and logged) unless it was the only one asked.
pub async fn search(state: Instances<'_>, query: &OfferQuery) -> Result<Vec<Offer>> {
    let clouds: Vec<_> = match &query.provider {
        Some(name) => vec![cloud(state, name)?.clone()],
        None => state.clouds.all().to_vec(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for c in &clouds {
        let c = c.clone();
        let q = query.clone();
        tasks.spawn(async move { (c.name(), c.search_offers(&q).await) });
    }
    let mut offers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, result) =
            joined.map_err(|e| Error::Internal(anyhow::anyhow!("offer search task: {e}")))?;
        match result {
            Ok(found) => offers.extend(found),
            Err(e) if clouds.len() == 1 => return Err(e),
            Err(e) => tracing::warn!(provider = name, error = ?e, "offer search failed"),
        }
    }
    Ok(query.apply(offers))
}

/// What `create` did.
#[derive(Debug, Clone)]
pub struct Created {
    pub instance: CloudInstance,
    pub replayed: bool,
}

fn fingerprint(owner: &str, body: &NewInstance) -> String {
    let digest = Sha256::digest(format!("{owner}\n{body:?}").as_bytes());
    hex::encode(digest)
}

/// Records the instance, then asks the provider for it (idempotent on the record id). A
/// repeat with the same `Idempotency-Key` returns the first instance, finishing its
/// creation if the first attempt stopped between the record and the provider.
pub async fn create(
    state: Instances<'_>,
    caller: &Caller,
    input: NewInstance,
    idempotency_key: Option<&str>,
) -> Result<Created> {
    let cloud = cloud(state, &input.provider)?.clone();
    if cloud.requires_image() && input.image.is_none() {
        return Err(Error::validation(format!(
            "image is required for {} instances",
            input.provider
        )));
    }
    let idempotency =
        Idempotency::from_header(idempotency_key, || fingerprint(&caller.user_id, &input))?;
    let offer = cloud.offer(&input.offer_id).await?.ok_or_else(|| {
        Error::validation(format!(
            "offer_id {:?} is not an offer of {}; search /api/v1/offers/search",
            input.offer_id, input.provider
        ))
    })?;
    // With an Idempotency-Key, a retry must reach the replay even though the first call
    // rented the offer; the provider refuses a truly unavailable one (recorded as failed).
    if !offer.is_available() && idempotency.is_none() {
        return Err(Error::Conflict(format!(
            "offer {} is not available right now",
            offer.id
        )));
    }
    let now = state.clock.now_millis();
    let record = CloudInstance {
        id: CloudInstance::new_id(&input.provider),
        owner: caller.user_id.clone(),
        provider: input.provider.clone(),
        provider_id: None,
        offer_id: offer.provider_id.clone(),
        name: input.label.clone(),
        status: InstanceStatus::Pending,
        status_reason: None,
        gpu_model: offer.gpu_model.clone(),
        gpu_count: offer.gpu_count,
        cpu_count: offer.cpu_count,
        ram_gb: offer.ram_gb,
        storage_gb: offer.storage_gb,
        price_per_hour: offer.price_per_hour,
        region: offer.region.clone(),
        image: input.image.clone(),
        onstart_script: input.onstart_script.clone(),
        ssh_key: input.ssh_key.clone(),
        public_ip: None,
        ssh_host: None,
        ssh_port: None,
        offer_data: offer.provider_data.clone(),
        created_at: now,
        updated_at: now,
        version: 0,
        price_source: offer
            .provider_data
            .get("price_source")
            .and_then(|s| s.as_str())
            .map(|s| format!("{} offer: {s}", input.provider))
            .or_else(|| Some(format!("{} offer", input.provider))),
        started_at: None,
        ended_at: None,
        budget_hold: None,
    };
    let budget = match super::costs::user_budget(state.store, caller).await? {
        None => None,
        Some(budget_usd) => {
            let minimum = crate::domain::costs::Price {
                usd_per_hour: offer.price_per_hour,
                source: String::new(),
            }
            .minimum_charge();
            let user = caller.user_id.as_str();
            Some(super::costs::budget_check(state.store, user, budget_usd, minimum, now).await?)
        }
    };
    let mut record = record;
    record.budget_hold = budget.as_ref().map(|b| b.hold.clone());
    let record = match state
        .store
        .create_instance(
            &record,
            caller.gpu_quota,
            idempotency.as_ref(),
            budget.as_ref(),
        )
        .await?
    {
        CreateInstanceOutcome::Created => record,
        CreateInstanceOutcome::OverBudget { held } => {
            let check = budget
                .as_ref()
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("over budget without a budget")))?;
            return Err(check.refusal(held, "instance"));
        }
        CreateInstanceOutcome::OverQuota { in_use, quota } => {
            return Err(Error::validation(
                crate::domain::requests::over_quota_message(record.gpu_count, in_use, quota),
            ))
        }
        CreateInstanceOutcome::IdempotencyMismatch => {
            return Err(Error::Conflict(
                "this Idempotency-Key was used for a different instance".into(),
            ))
        }
        CreateInstanceOutcome::Replayed(original) => {
            let original = *original;
            if original.status != InstanceStatus::Pending || original.provider_id.is_some() {
                return Ok(Created {
                    instance: original,
                    replayed: true,
                });
            }
            // The first attempt stopped before the provider answered: finish it (the
            // record id makes the provider call idempotent).
            let instance = launch(state, cloud.as_ref(), original, offer, input).await?;
            return Ok(Created {
                instance,
                replayed: true,
            });
        }
    };
    let instance = launch(state, cloud.as_ref(), record, offer, input).await?;
    Ok(Created {
        instance,
        replayed: false,
    })
}

async fn launch(
    state: Instances<'_>,
    cloud: &dyn GpuCloud,
    mut record: CloudInstance,
    offer: Offer,
    input: NewInstance,
) -> Result<CloudInstance> {
    let spec = CreateInstanceSpec {
        record_id: record.id.clone(),
        owner: record.owner.clone(),
        offer_id: offer.provider_id.clone(),
        request: input,
        offer,
    };
    let now = state.clock.now_millis();
    match cloud.create(&spec).await {
        Ok(seen) => {
            record.observe(&seen, now);
            save(state, record).await
        }
        Err(LaunchError::Other(e)) => {
            // Unknown outcome: the record stays pending; a retry (same Idempotency-Key)
            // or reconcile adopts the machine if it was started.
            Err(e)
        }
        Err(e) => {
            record.status = InstanceStatus::Failed;
            record.status_reason = Some(e.to_string());
            record.updated_at = now;
            save(state, record).await?;
            Err(match e {
                LaunchError::Rejected(m) => {
                    Error::validation(format!("the provider refused the instance: {m}"))
                }
                other => Error::Unavailable(format!(
                    "the provider has no capacity for this offer right now ({other}); try another offer"
                )),
            })
        }
    }
}

/// Saves a record, or reloads it when someone else saved first (their write wins).
async fn save(state: Instances<'_>, mut record: CloudInstance) -> Result<CloudInstance> {
    record.meter(state.clock.now_millis());
    match state.store.save_instance(&record).await {
        Err(Error::Conflict(_)) => state
            .store
            .get_instance(&record.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("instance {}", record.id))),
        other => other,
    }
}

/// The caller's instances, newest first (an admin's: everyone's).
pub async fn list(state: Instances<'_>, caller: Option<&Caller>) -> Result<Vec<CloudInstance>> {
    state
        .store
        .list_instances(caller.map(|c| c.user_id.as_str()))
        .await
}

/// One of the caller's instances; someone else's is "not found" (its existence is not
/// revealed).
async fn owned(state: Instances<'_>, caller: Option<&Caller>, id: &str) -> Result<CloudInstance> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let found = if valid {
        state.store.get_instance(id).await?
    } else {
        None
    };
    match found {
        Some(r) if caller.is_none_or(|c| c.user_id == r.owner) => Ok(r),
        _ => Err(Error::NotFound(format!("instance {id}"))),
    }
}

/// One instance, refreshed from its provider (status, address) when it is not final.
pub async fn get(state: Instances<'_>, caller: Option<&Caller>, id: &str) -> Result<CloudInstance> {
    let record = owned(state, caller, id).await?;
    refresh(state, record).await
}

async fn refresh(state: Instances<'_>, mut record: CloudInstance) -> Result<CloudInstance> {
    let (Some(provider_id), false) = (record.provider_id.clone(), record.status.is_final()) else {
        return Ok(record);
    };
    let Some(cloud) = state.clouds.get(&record.provider) else {
        return Ok(record);
    };
    let now = state.clock.now_millis();
    let changed = match cloud.show(&provider_id).await? {
        Some(seen) => record.observe(&seen, now),
        None => {
            // The provider no longer knows it: it is gone.
            record.status = InstanceStatus::Destroyed;
            record.updated_at = now;
            true
        }
    };
    if changed {
        save(state, record).await
    } else {
        Ok(record)
    }
}

/// Start (`true`) or stop a machine. Refused (409) while it is being created or after it
/// ended.
pub async fn power(
    state: Instances<'_>,
    caller: Option<&Caller>,
    id: &str,
    start: bool,
) -> Result<CloudInstance> {
    let record = refresh(state, owned(state, caller, id).await?).await?;
    let Some(provider_id) = record.provider_id.clone() else {
        return Err(Error::Conflict(format!(
            "instance {id} is still being created"
        )));
    };
    use InstanceStatus::*;
    let allowed = if start {
        matches!(record.status, Stopped | Stopping | Running | Loading)
    } else {
        matches!(record.status, Running | Loading | Stopping | Stopped)
    };
    if !allowed {
        return Err(Error::Conflict(format!(
            "instance {id} is {} and cannot be {}",
            record.status.as_str(),
            if start { "started" } else { "stopped" }
        )));
    }
    let cloud = cloud(state, &record.provider)?;
    let mut record = record;
    if start {
        if !matches!(record.status, Running | Loading) {
            cloud.start(&provider_id).await?;
            record.status = Loading;
        }
    } else if !matches!(record.status, Stopped | Stopping) {
        cloud.stop(&provider_id).await?;
        record.status = Stopping;
    }
    record.updated_at = state.clock.now_millis();
    save(state, record).await
}

/// Ends a machine. The record says `destroyed` only once the provider confirms; until
/// then it says `destroying` (and reconcile finishes the job).
pub async fn destroy(
    state: Instances<'_>,
    caller: Option<&Caller>,
    id: &str,
) -> Result<CloudInstance> {
    let mut record = owned(state, caller, id).await?;
    if record.status.is_final() {
        return Ok(record);
    }
    let Some(provider_id) = record.provider_id.clone() else {
        return Err(Error::Conflict(format!(
            "instance {id} is still being created; retry in a few seconds"
        )));
    };
    let cloud = cloud(state, &record.provider)?.clone();
    if record.status != InstanceStatus::Destroying {
        record.status = InstanceStatus::Destroying;
        record.updated_at = state.clock.now_millis();
        record = save(state, record).await?;
    }
    if cloud.destroy(&provider_id).await? {
        record.status = InstanceStatus::Destroyed;
        record.updated_at = state.clock.now_millis();
        record = save(state, record).await?;
    }
    Ok(record)
}

/// What reconciling the instances API did.
#[derive(Debug, Default, serde::Serialize, PartialEq, utoipa::ToSchema)]
pub struct InstancesReport {
    /// Machines with no live record, ended.
    pub orphans_destroyed: Vec<String>,
    /// Records whose machine the provider created but the record never heard of.
    pub adopted: Vec<String>,
    /// Records whose machine is gone, or whose destroy is now confirmed.
    pub marked_destroyed: Vec<String>,
}

/// Makes each provider's machines and the records agree: a machine whose record is
/// missing or final is ended (after the grace period: its record may be being written);
/// a pending record adopts its machine; a live record whose machine vanished, or a
/// `destroying` one now confirmed, becomes `destroyed`.
pub async fn reconcile(state: Instances<'_>) -> Result<InstancesReport> {
    let mut report = InstancesReport::default();
    if state.clouds.all().is_empty() {
        return Ok(report);
    }
    let now = state.clock.now_millis();
    let grace = i64::try_from(state.config.reconcile_grace.as_millis()).unwrap_or(i64::MAX);
    let records = state.store.list_instances(None).await?;
    let by_id: HashMap<&str, &CloudInstance> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    for cloud in state.clouds.all() {
        let machines: Vec<ProviderInstance> = match cloud.list_owned().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = cloud.name(), error = ?e, "listing instances failed");
                continue;
            }
        };
        let mut seen = std::collections::HashSet::new();
        for machine in &machines {
            seen.insert(machine.provider_id.clone());
            let record = machine.record_id.as_deref().and_then(|id| by_id.get(id));
            let live = record.filter(|r| !r.status.is_final());
            if let Some(r) = live.filter(|r| r.provider_id.is_none()) {
                // Created, but the record never heard back: adopt it.
                let mut r = (*r).clone();
                r.observe(machine, now);
                save(state, r).await?;
                report.adopted.push(machine.provider_id.clone());
            } else if let Some(r) =
                live.filter(|r| r.provider_id.as_deref() == Some(&machine.provider_id))
            {
                // A destroy that was not confirmed before: finish it.
                if r.status == InstanceStatus::Destroying
                    && cloud.destroy(&machine.provider_id).await?
                {
                    let mut r = (*r).clone();
                    r.status = InstanceStatus::Destroyed;
                    r.updated_at = now;
                    save(state, r).await?;
                    report.marked_destroyed.push(machine.provider_id.clone());
                }
            } else if (now - machine.launched_at >= grace || record.is_some())
                && cloud.destroy(&machine.provider_id).await?
            {
                // No live record names it (or the record names another machine): nobody
                // will ever use it. Young unrecorded machines are creates in flight.
                report.orphans_destroyed.push(machine.provider_id.clone());
            }
        }
        // Pending records the provider never created (the create failed or died).
        for r in records.iter().filter(|r| {
            r.provider == cloud.name()
                && r.status == InstanceStatus::Pending
                && r.provider_id.is_none()
                && now - r.created_at >= grace
                && !machines
                    .iter()
                    .any(|m| m.record_id.as_deref() == Some(&r.id))
        }) {
            let mut r = r.clone();
            r.status = InstanceStatus::Failed;
            r.status_reason = Some("the provider never created this machine".into());
            r.updated_at = now;
            save(state, r).await?;
        }
        for r in records.iter().filter(|r| {
            r.provider == cloud.name()
                && !r.status.is_final()
                && now - r.updated_at >= grace
                && r.provider_id.as_ref().is_some_and(|p| !seen.contains(p))
        }) {
            let mut r = r.clone();
            r.status = InstanceStatus::Destroyed;
            r.status_reason = Some("the provider no longer lists this machine".into());
            r.updated_at = now;
            report.marked_destroyed.push(r.id.clone());
            save(state, r).await?;
        }
    }
    Ok(report)
}
