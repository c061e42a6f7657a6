//! Participants' work: each VM's agent syncs the files matching the collect patterns to the
//! work store (it asks for upload URLs, PUTs the bytes, then says it is done); a destroy asks
//! every VM for a final sync first and waits a bounded time; the admin downloads everything
//! as one zip (one folder per VM) and deletes it when done. What was collected lives in the
//! work store, not in the VM records, so it outlives the fleet.

use std::collections::{BTreeMap, HashMap};

use futures_util::{StreamExt as _, TryStreamExt as _};
use std::time::Duration;

use crate::config::CollectConfig;
use crate::domain::collect::{
    manifest_key, object_key, work_prefix, CollectedPath, FinalSync, RefusedFile, StoredFile,
    VmManifest, EXPORT_PREFIX, MANIFEST_PREFIX, WORK_PREFIX,
};
use crate::domain::zip::ZipWriter;
use crate::domain::{Liveness, Millis, Vm, VmChange};
use crate::error::{Error, Result};
use crate::ports::{AssignmentNotifier, Clock, UploadUrl, VmStore, WorkStore};
use crate::usecases::vm_agent::AuthenticatedVm;
use crate::AppState;

/// How long an upload URL stays valid (the agent uploads right after its plan).
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(5 * 60);
/// Sync plans one VM may ask for per minute: twice what its interval needs, plus a few (the
/// first sync, a destroy's request). URLs not yet used do not count against the caps, so
/// this bounds what a stolen VM token can have granted at once: at most this × 5 (minutes
/// of validity) × the per-VM cap.
pub fn plans_per_minute(config: &CollectConfig) -> u32 {
    let per_minute = 60 / config.interval.as_secs().max(1);
    u32::try_from(per_minute * 2)
        .unwrap_or(u32::MAX)
        .saturating_add(6)
}
/// How long the download URL of an assembled zip stays valid.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Most files one sync may offer.
pub const MAX_FILES_PER_SYNC: usize = 2_000;
/// Store calls a destroy's final sync makes at once.
const PARALLEL_CALLS: usize = 16;
/// How often a destroy looks for the VMs' answers while it waits.
const FINAL_SYNC_POLL: Duration = Duration::from_millis(250);

/// The ports of collection: the VM records (final-sync requests), the work store, the
/// long-poll wake-ups, the time and the settings.
#[derive(Clone, Copy)]
pub struct Collection<'a> {
    pub vms: &'a dyn VmStore,
    pub work: &'a dyn WorkStore,
    pub notifier: &'a dyn AssignmentNotifier,
    pub clock: &'a dyn Clock,
    pub config: &'a CollectConfig,
    pub liveness: Liveness,
    pub limiter: super::rate_limit::Limiter<'a>,
}

impl<'a> From<&'a AppState> for Collection<'a> {
    fn from(state: &'a AppState) -> Self {
        Collection {
            vms: &*state.store,
            work: &*state.work,
            notifier: &*state.notifier,
            clock: &*state.clock,
            config: &state.config.collect,
            liveness: state.config.liveness(),
            limiter: state.into(),
        }
    }
}

/// A file the agent found in the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFile {
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of its content.
    pub sha256: String,
}

/// What to do with each offered file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncPlan {
    /// New or changed: PUT the bytes here.
    pub uploads: Vec<(String, UploadUrl)>,
    /// Collected already, byte for byte.
    pub unchanged: Vec<String>,
    pub refused: Vec<RefusedFile>,
}

async fn manifest_of(ports: Collection<'_>, hostname: &str) -> Result<Option<VmManifest>> {
    match ports.work.get(&manifest_key(hostname)).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Internal(anyhow::anyhow!("reading the manifest of {hostname}: {e}"))
        }),
    }
}

async fn save_manifest(ports: Collection<'_>, manifest: &VmManifest) -> Result<()> {
    let bytes = serde_json::to_vec(manifest).map_err(|e| Error::Internal(e.into()))?;
    ports
        .work
        .put(&manifest_key(&manifest.hostname), bytes)
        .await
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Path → (size, hash) of the files a manifest lists.
fn hashes_of(files: Vec<StoredFile>) -> HashMap<String, (u64, String)> {
    files
        .into_iter()
        .map(|f| (f.path, (f.size, f.sha256)))
        .collect()
}

/// The hash known for `path` at `size`: one reported for another size describes another
/// version (an upload that failed halfway leaves the old object and its old hash).
fn known_hash(hashes: &HashMap<String, (u64, String)>, path: &str, size: u64) -> String {
    match hashes.get(path) {
        Some((known, sha)) if *known == size => sha.clone(),
        _ => String::new(),
    }
}

/// What the store holds under the VM's prefix, with the hashes known for those sizes.
async fn stored_files(
    ports: Collection<'_>,
    hostname: &str,
    hashes: &HashMap<String, (u64, String)>,
) -> Result<Vec<StoredFile>> {
    let prefix = work_prefix(hostname);
    Ok(ports
        .work
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| {
            let path = o.key.strip_prefix(&prefix)?.to_string();
            let sha256 = known_hash(hashes, &path, o.size);
            Some(StoredFile {
                path,
                size: o.size,
                sha256,
            })
        })
        .collect())
}

/// Step one of a sync: the agent offers every matching file it has (path, size, SHA-256);
/// each new or changed one gets a short-lived upload URL under this VM's own prefix, and
/// each one the rules refuse (a name that could leave the folder, one the patterns do not
/// collect, one over a size cap) is answered with the reason.
pub async fn plan_sync(
    ports: Collection<'_>,
    vm: &AuthenticatedVm,
    files: Vec<OfferedFile>,
) -> Result<SyncPlan> {
    if files.len() > MAX_FILES_PER_SYNC {
        return Err(Error::validation(format!(
            "at most {MAX_FILES_PER_SYNC} files per sync (got {})",
            files.len()
        )));
    }
    let hostname = vm.hostname();
    let allowed = plans_per_minute(ports.config);
    let limit =
        super::rate_limit::hit(ports.limiter, &format!("collect:{hostname}"), allowed).await?;
    if !limit.allowed {
        return Err(Error::RateLimited {
            message: format!(
                "more than {allowed} syncs a minute from this VM; try again in {} s",
                limit.retry_after
            ),
            retry_after: limit.retry_after,
        });
    }
    let manifest = manifest_of(ports, hostname).await?.unwrap_or_default();
    // Sizes as the store holds them: a VM cannot under-report what it uploaded.
    let mut stored: HashMap<String, (u64, String)> =
        stored_files(ports, hostname, &hashes_of(manifest.files))
            .await?
            .into_iter()
            .map(|f| (f.path, (f.size, f.sha256)))
            .collect();
    let mut plan = SyncPlan::default();
    for file in files {
        let refuse = |reason: String| RefusedFile {
            path: file.path.chars().take(300).collect(),
            reason,
        };
        let path = match CollectedPath::parse(&file.path) {
            Ok(path) => path,
            Err(e) => {
                plan.refused.push(refuse(e.to_string()));
                continue;
            }
        };
        if !ports.config.patterns.collects(&path) {
            plan.refused.push(refuse(
                "the name matches none of GPUFLEET_COLLECT_PATTERNS".into(),
            ));
            continue;
        }
        if !is_sha256(&file.sha256) {
            plan.refused
                .push(refuse("sha256 must be 64 hex digits".into()));
            continue;
        }
        let key = path.as_str().to_string();
        if stored.get(&key) == Some(&(file.size, file.sha256.to_ascii_lowercase())) {
            plan.unchanged.push(key);
            continue;
        }
        let total: u64 = stored.values().map(|(size, _)| size).sum();
        let replaced = stored.get(&key).map_or(0, |(size, _)| *size);
        if let Err(refusal) = ports.config.caps.admit(file.size, total - replaced) {
            plan.refused.push(refuse(refusal.to_string()));
            continue;
        }
        let url = ports
            .work
            .upload_url(&object_key(hostname, &path), file.size, UPLOAD_URL_TTL)
            .await?;
        // Count it against the cap now, so one sync cannot overshoot it.
        stored.insert(key.clone(), (file.size, file.sha256.to_ascii_lowercase()));
        plan.uploads.push((key, url));
    }
    Ok(plan)
}

/// Step two: the agent reports what it uploaded (and what was refused, so the admin sees
/// it). The manifest is rebuilt from what the store really holds under the VM's prefix;
/// `answering` is the final-sync request this sync answers, if any.
pub async fn finish_sync(
    ports: Collection<'_>,
    vm: &AuthenticatedVm,
    uploaded: Vec<OfferedFile>,
    refused: Vec<RefusedFile>,
    answering: Option<Millis>,
) -> Result<VmManifest> {
    let hostname = vm.hostname();
    let previous = manifest_of(ports, hostname).await?.unwrap_or_default();
    let mut hashes = hashes_of(previous.files.clone());
    for f in uploaded {
        hashes.insert(f.path, (f.size, f.sha256.to_ascii_lowercase()));
    }
    let files = stored_files(ports, hostname, &hashes).await?;
    // The record as it is now: the participant may have claimed since the VM authenticated,
    // and only a request the VM really received can be answered.
    let current = ports
        .vms
        .get_vm(hostname)
        .await?
        .unwrap_or_else(|| vm.vm().clone());
    let answered = match (answering, current.collect_requested_at) {
        (Some(a), Some(requested)) if a <= requested => Some(a),
        _ => previous.answered_request,
    };
    let manifest = VmManifest {
        hostname: hostname.to_string(),
        email: participant_email(&current).or(previous.email),
        last_sync_at: Some(ports.clock.now_millis()),
        answered_request: answered,
        // A late answer to the request it missed clears the mark.
        missed_final_sync: previous
            .missed_final_sync
            .filter(|missed| answered.is_none_or(|a| a < *missed)),
        files,
        refused: refused
            .into_iter()
            .take(100)
            .map(|r| RefusedFile {
                path: r.path.chars().take(300).collect(),
                reason: r.reason.chars().take(300).collect(),
            })
            .collect(),
    };
    save_manifest(ports, &manifest).await?;
    // Only now, with the files and the manifest stored, does the request count as answered.
    if let Some(at) = answering.filter(|a| answered == Some(*a)) {
        match ports
            .vms
            .update_vm(
                hostname,
                &VmChange::CollectAnswered(at),
                ports.clock.now_millis(),
            )
            .await
        {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(manifest)
}

fn participant_email(vm: &Vm) -> Option<String> {
    vm.assignment
        .as_ref()
        .filter(|a| a.is_participant())
        .map(|a| a.email.clone())
}

/// Before a destroy: asks every VM for a final sync (its long-poll answers at once) and
/// waits until each has answered or `ports.config.final_wait` has passed. A VM that is not
/// live is not waited for. Every VM is in the answer, answered or not; a VM that did not
/// answer keeps what it synced before, and its manifest says it missed the final sync.
pub async fn final_sync(ports: Collection<'_>, vms: &[Vm]) -> Result<Vec<FinalSync>> {
    if !ports.config.enabled() || vms.is_empty() {
        return Ok(Vec::new());
    }
    let requested_at = ports.clock.now_millis();
    let live_since = ports.liveness.live_since(requested_at);
    // A leased machine has no participant desktop (its user works over SSH).
    let vms: Vec<&Vm> = vms.iter().filter(|v| v.lease_request().is_none()).collect();
    // Asked side by side (a destroy has API Gateway's 30 s for everything, whatever the
    // fleet's size).
    let asks: Vec<_> = vms
        .iter()
        .filter(|vm| vm.is_live(live_since))
        .map(|vm| ask_final_sync(ports, vm, requested_at))
        .collect();
    let asked: Vec<&str> = futures_util::stream::iter(asks)
        .buffer_unordered(PARALLEL_CALLS)
        .try_collect()
        .await?;
    let mut pending = asked.clone();
    // The answers land on the VM records (one listing per poll, whatever the fleet's size),
    // which the dashboard's live table also shows.
    let deadline = tokio::time::Instant::now() + ports.config.final_wait;
    let mut answered: std::collections::HashSet<String> = std::collections::HashSet::new();
    while !pending.is_empty() {
        for vm in ports.vms.list_vms().await? {
            if vm.collect_answered_at.is_some_and(|a| a >= requested_at) {
                answered.insert(vm.hostname);
            }
        }
        pending.retain(|h| !answered.contains(*h));
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(FINAL_SYNC_POLL).await;
    }
    let reports: Vec<_> = vms
        .iter()
        .map(|vm| final_sync_of(ports, vm, &answered, &asked, requested_at))
        .collect();
    let outcomes: Vec<Option<FinalSync>> = futures_util::stream::iter(reports)
        .buffered(PARALLEL_CALLS)
        .try_collect()
        .await?;
    let outcome: Vec<FinalSync> = outcomes.into_iter().flatten().collect();
    Ok(outcome)
}

/// Marks one VM with the final-sync request and wakes its long-poll.
async fn ask_final_sync<'v>(
    ports: Collection<'_>,
    vm: &'v Vm,
    requested_at: Millis,
) -> Result<&'v str> {
    ports
        .vms
        .update_vm(
            &vm.hostname,
            &VmChange::CollectRequested(requested_at),
            requested_at,
        )
        .await?;
    ports.notifier.notify(&vm.hostname);
    Ok(vm.hostname.as_str())
}

/// How one VM's final sync went, from its manifest; a VM that missed it is marked so.
async fn final_sync_of(
    ports: Collection<'_>,
    vm: &Vm,
    answered: &std::collections::HashSet<String>,
    asked: &[&str],
    requested_at: Millis,
) -> Result<Option<FinalSync>> {
    let existing = manifest_of(ports, &vm.hostname).await?;
    if answered.contains(&vm.hostname) {
        let m = existing.unwrap_or_default();
        return Ok(Some(FinalSync {
            hostname: vm.hostname.clone(),
            answered: true,
            files: m.files.len(),
            bytes: m.bytes(),
            last_sync_at: m.last_sync_at,
        }));
    }
    // A VM that was never heard from in time, never synced and never claimed holds
    // nobody's work: nothing to report about it.
    if existing.is_none()
        && !asked.contains(&vm.hostname.as_str())
        && participant_email(vm).is_none()
    {
        return Ok(None);
    }
    let mut m = existing.unwrap_or_else(|| VmManifest {
        hostname: vm.hostname.clone(),
        ..VmManifest::default()
    });
    if m.email.is_none() {
        m.email = participant_email(vm);
    }
    m.missed_final_sync = Some(requested_at);
    save_manifest(ports, &m).await?;
    Ok(Some(FinalSync {
        hostname: vm.hostname.clone(),
        answered: false,
        files: m.files.len(),
        bytes: m.bytes(),
        last_sync_at: m.last_sync_at,
    }))
}

/// One VM's collected work, as the dashboard and the download's manifest show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedVm {
    pub manifest: VmManifest,
    /// Files in the store (a sync that stopped before its report still counts).
    pub stored: Vec<StoredFile>,
}

impl CollectedVm {
    pub fn bytes(&self) -> u64 {
        self.stored.iter().map(|f| f.size).sum()
    }
}

/// Everything collected, per VM (hostname order): the store's files joined with the
/// manifests, so a VM whose manifest is missing still shows and a destroyed VM still counts.
pub async fn collected(ports: Collection<'_>) -> Result<Vec<CollectedVm>> {
    let mut by_vm: BTreeMap<String, CollectedVm> = BTreeMap::new();
    let mut hashes: HashMap<String, HashMap<String, (u64, String)>> = HashMap::new();
    for object in ports.work.list(MANIFEST_PREFIX).await? {
        let Some(hostname) = object
            .key
            .strip_prefix(MANIFEST_PREFIX)
            .and_then(|k| k.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some(manifest) = manifest_of(ports, hostname).await? {
            hashes.insert(hostname.to_string(), hashes_of(manifest.files.clone()));
            by_vm.insert(
                hostname.to_string(),
                CollectedVm {
                    manifest,
                    stored: Vec::new(),
                },
            );
        }
    }
    for object in ports.work.list(WORK_PREFIX).await? {
        let Some((hostname, path)) = object
            .key
            .strip_prefix(WORK_PREFIX)
            .and_then(|k| k.split_once('/'))
        else {
            continue;
        };
        let entry = by_vm
            .entry(hostname.to_string())
            .or_insert_with(|| CollectedVm {
                manifest: VmManifest {
                    hostname: hostname.to_string(),
                    ..VmManifest::default()
                },
                stored: Vec::new(),
            });
        let sha256 = hashes
            .get(hostname)
            .map(|known| known_hash(known, path, object.size))
            .unwrap_or_default();
        entry.stored.push(StoredFile {
            path: path.to_string(),
            size: object.size,
            sha256,
        });
    }
    Ok(by_vm.into_values().collect())
}

/// An assembled download: its URL and what is in it.
#[derive(Debug, Clone)]
pub struct Export {
    pub url: String,
    pub vms: Vec<CollectedVm>,
}

/// Assembles every collected file into one zip in the work store (one folder per VM, named
/// after its hostname and participant), written front to back so no size limit applies,
/// and returns a short-lived URL to it. `NotFound` when nothing was collected.
pub async fn export_zip(ports: Collection<'_>) -> Result<Export> {
    let vms = collected(ports).await?;
    if vms.iter().all(|v| v.stored.is_empty()) {
        return Err(Error::NotFound(
            "collected work (no VM has synced a file yet)".into(),
        ));
    }
    let now = ports.clock.now_millis();
    let key = format!("{EXPORT_PREFIX}participants-work-{now}.zip");
    let mut upload = ports.work.start_export(&key).await?;
    match write_zip(ports, &vms, upload.as_mut(), now).await {
        Ok(()) => {}
        Err(e) => {
            upload.abort().await;
            return Err(e);
        }
    }
    let url = upload.finish(DOWNLOAD_URL_TTL).await?;
    // Earlier downloads whose URLs have expired are copies nobody can fetch any more.
    let expired_before = now - i64::try_from(DOWNLOAD_URL_TTL.as_millis()).unwrap_or(i64::MAX);
    for old in ports.work.list(EXPORT_PREFIX).await? {
        let made_at = old
            .key
            .strip_prefix(EXPORT_PREFIX)
            .and_then(|k| k.strip_prefix("participants-work-"))
            .and_then(|k| k.strip_suffix(".zip"))
            .and_then(|t| t.parse::<Millis>().ok());
        if made_at.is_some_and(|t| t < expired_before) {
            ports.work.delete_prefix(&old.key).await?;
        }
    }
    Ok(Export { url, vms })
}

async fn write_zip(
    ports: Collection<'_>,
    vms: &[CollectedVm],
    upload: &mut dyn crate::ports::ExportUpload,
    now: Millis,
) -> Result<()> {
    let mut zip = ZipWriter::new();
    for vm in vms {
        let folder = vm.manifest.folder();
        let modified = vm.manifest.last_sync_at.unwrap_or(now);
        for file in &vm.stored {
            let Ok(path) = CollectedPath::parse(&file.path) else {
                continue; // never stored by the API; nothing a VM can name
            };
            // A presigned PUT may not have held a VM to the size it announced: an object
            // over the per-file cap is left out rather than read into memory.
            if file.size > ports.config.caps.per_file {
                tracing::warn!(
                    vm = %vm.manifest.hostname,
                    path = %file.path,
                    size = file.size,
                    "left out of the zip: over the per-file cap"
                );
                continue;
            }
            let key = object_key(&vm.manifest.hostname, &path);
            // Gone since the listing (deleted meanwhile): skip it rather than fail.
            let Some(bytes) = ports.work.get(&key).await? else {
                continue;
            };
            let entry = zip.entry(&format!("{folder}/{}", path.as_str()), &bytes, modified)?;
            upload.write(entry).await?;
        }
    }
    upload.write(zip.finish()).await
}

/// Deletes everything collected (files, manifests, assembled downloads); returns how many
/// objects went.
pub async fn delete_all(ports: Collection<'_>) -> Result<u64> {
    let mut deleted = 0;
    for prefix in [WORK_PREFIX, MANIFEST_PREFIX, EXPORT_PREFIX] {
        deleted += ports.work.delete_prefix(prefix).await?;
    }
    Ok(deleted)
}
