//! Syncs the participant's work: every file under the working directory that matches the
//! allocator's collect patterns is offered (path, size, SHA-256); new or changed ones are
//! PUT to the short-lived URLs the allocator answers, and the sync is reported done. Runs on
//! the allocator's interval, when the long-poll asks (a destroy is coming), and once more
//! when the agent is stopped (SIGTERM at shutdown).
//!
//! Symbolic links, hidden files and hidden folders are never followed or sent, and only files
//! owned by the working directory's owner are read, through a descriptor opened without
//! following links: the agent may run as root, and a participant must not be able to
//! collect what is not theirs (a link, or a file swapped for one between check and read).

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use shared::domain::collect::{CollectedPath, Patterns, MAX_DEPTH};
use tokio::sync::{mpsc, oneshot};

use super::{CallError, Client, Log};

/// Most files one scan offers (the allocator refuses more per sync).
const MAX_FILES: usize = 2_000;
/// An upload's own timeout (a 100 MiB file on a slow link).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Ask the collector for a sync now.
pub(super) struct SyncNow {
    /// The final-sync request (`requested_at`) this sync answers.
    pub answering: Option<i64>,
    /// Told when the sync is over.
    pub done: Option<oneshot::Sender<()>>,
}

struct Found {
    path: String,
    file: PathBuf,
    size: u64,
    sha256: String,
}

/// Hashes are reused while a file's size and modification time stay the same.
type HashCache = HashMap<PathBuf, (u64, SystemTime, String)>;

pub(super) async fn run(
    client: Client,
    host: String,
    work_dir: PathBuf,
    mut requests: mpsc::Receiver<SyncNow>,
    log: Log,
) {
    let mut interval = Duration::from_secs(300);
    let mut settings = Settings::default();
    let mut cache = HashCache::new();
    // The settings first (patterns, interval); the first sync follows at once.
    let mut next: Option<SyncNow> = Some(SyncNow {
        answering: None,
        done: None,
    });
    loop {
        let request = match next.take() {
            Some(r) => r,
            None => tokio::select! {
                r = requests.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
                _ = tokio::time::sleep(interval) => SyncNow { answering: None, done: None },
            },
        };
        match sync(
            &client,
            &host,
            &work_dir,
            &mut settings,
            &mut cache,
            request.answering,
            &log,
        )
        .await
        {
            Ok(Some(every)) => interval = every,
            Ok(None) => {}
            Err(e) => {
                if let Some(CallError::Rejected(401 | 404, _)) = e.downcast_ref::<CallError>() {
                    if let Some(done) = request.done {
                        let _ = done.send(());
                    }
                    return; // the VM is gone
                }
                log.say(format!("collect: sync failed: {e:#}"));
            }
        }
        if let Some(done) = request.done {
            let _ = done.send(());
        }
    }
}

/// What the allocator answers with every plan.
#[derive(Debug, Clone, Default)]
struct Settings {
    patterns: Patterns,
    max_file_bytes: u64,
}

impl Settings {
    fn of(answer: &Value) -> Self {
        let raw: Vec<&str> = answer["patterns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        Settings {
            patterns: Patterns::parse(&raw.join(",")).unwrap_or_default(),
            max_file_bytes: answer["max_file_bytes"].as_u64().unwrap_or(100 << 20),
        }
    }
}

/// One sync; returns the allocator's interval.
async fn sync(
    client: &Client,
    host: &str,
    work_dir: &Path,
    settings: &mut Settings,
    cache: &mut HashCache,
    answering: Option<i64>,
    log: &Log,
) -> anyhow::Result<Option<Duration>> {
    if settings.patterns.is_empty() {
        // Learn the settings (an empty offer uploads nothing).
        let answer = client
            .post("/api/collect/plan", &json!({"hostname": host, "files": []}))
            .await?;
        *settings = Settings::of(&answer);
    }
    let (found, mut refused) = if settings.patterns.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let (dir, wanted) = (work_dir.to_path_buf(), settings.clone());
        let mut owned_cache = std::mem::take(cache);
        let (found, refused, owned_cache) = tokio::task::spawn_blocking(move || {
            let (found, refused) = scan(&dir, &wanted, &mut owned_cache);
            (found, refused, owned_cache)
        })
        .await?;
        *cache = owned_cache;
        (found, refused)
    };
    let offer: Vec<Value> = found
        .iter()
        .map(|f| json!({"path": f.path, "size": f.size, "sha256": f.sha256}))
        .collect();
    let answer = client
        .post(
            "/api/collect/plan",
            &json!({"hostname": host, "files": offer}),
        )
        .await?;
    *settings = Settings::of(&answer);
    let interval = answer["interval_seconds"].as_u64().map(Duration::from_secs);
    if let Some(r) = answer["refused"].as_array() {
        refused.extend(r.iter().cloned());
    }
    let by_path: HashMap<&str, &Found> = found.iter().map(|f| (f.path.as_str(), f)).collect();
    let owner = owner_of(work_dir)?;
    let mut uploaded = Vec::new();
    for upload in answer["uploads"].as_array().into_iter().flatten() {
        let (Some(path), Some(url)) = (upload["path"].as_str(), upload["url"].as_str()) else {
            continue;
        };
        let Some(f) = by_path.get(path) else { continue };
        match put(client, url, &upload["headers"], f, owner).await {
            Ok(()) => uploaded.push(json!({"path": f.path, "size": f.size, "sha256": f.sha256})),
            Err(e) => log.say(format!(
                "collect: uploading {path} failed ({e:#}); next sync retries"
            )),
        }
    }
    let unchanged = answer["unchanged"].as_array().map_or(0, Vec::len);
    for r in &refused {
        log.say(format!(
            "collect: not collected: {} ({})",
            r["path"].as_str().unwrap_or("?"),
            r["reason"].as_str().unwrap_or("?")
        ));
    }
    let mut done = json!({"hostname": host, "uploaded": uploaded, "refused": refused});
    if let Some(at) = answering {
        done["answering"] = json!(at);
    }
    client.post("/api/collect/done", &done).await?;
    if !uploaded.is_empty() || answering.is_some() {
        log.say(format!(
            "collect: synced {} new or changed file(s), {unchanged} unchanged{}",
            uploaded.len(),
            if answering.is_some() {
                " (final sync)"
            } else {
                ""
            }
        ));
    }
    Ok(interval)
}

/// The uid that owns the working directory: only its files are collected.
fn owner_of(work_dir: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::symlink_metadata(work_dir)?.uid())
}

/// Opens a file without following a link in its last component, and only if it is a regular
/// file of `owner`. Everything after reads this descriptor, so a swap after the check
/// changes nothing.
fn open_owned(path: &Path, owner: u32) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != owner {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a regular file of the working directory's owner",
        ));
    }
    Ok((file, meta))
}

/// SHA-256 of everything read from `file`, in 1 MiB steps, and how many bytes that was.
fn hash_of(mut file: std::fs::File) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), total));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// PUTs one file, read again through a fresh checked descriptor, and only if it is still
/// the version that was offered.
async fn put(
    client: &Client,
    url: &str,
    headers: &Value,
    f: &Found,
    owner: u32,
) -> anyhow::Result<()> {
    let file = f.file.clone();
    let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let (mut handle, _) = open_owned(&file, owner)?;
        let mut bytes = Vec::new();
        handle.read_to_end(&mut bytes)?;
        Ok(bytes)
    })
    .await??;
    if bytes.len() as u64 != f.size || hex::encode(Sha256::digest(&bytes)) != f.sha256 {
        anyhow::bail!("the file changed while syncing");
    }
    let mut req = client.http.put(url).timeout(UPLOAD_TIMEOUT).body(bytes);
    for (k, v) in headers.as_object().into_iter().flatten() {
        if let Some(v) = v.as_str() {
            req = req.header(k.as_str(), v);
        }
    }
    let resp = req.send().await?;
    if !resp.status().is_success() {
        anyhow::bail!("HTTP {}", resp.status());
    }
    Ok(())
}

/// Walks `dir` for regular files of its owner matching the patterns; returns them with
/// their hashes, and what cannot be collected with the reason (a name that is not UTF-8,
/// over the size cap, too many files).
fn scan(dir: &Path, settings: &Settings, cache: &mut HashCache) -> (Vec<Found>, Vec<Value>) {
    let mut found = Vec::new();
    let mut refused = Vec::new();
    let Ok(owner) = owner_of(dir) else {
        return (found, refused); // no working directory (yet)
    };
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = std::collections::HashSet::new();
    while let Some((folder, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                refused.push(json!({"path": entry.path().display().to_string(), "reason": "the name is not UTF-8"}));
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            // Never follow a link: `symlink_metadata` describes the link itself.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.uid() != owner {
                continue;
            }
            if meta.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    stack.push((entry.path(), depth + 1));
                }
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Ok(relative) = entry.path().strip_prefix(dir).map(Path::to_path_buf) else {
                continue;
            };
            let Some(relative) = relative.to_str().map(str::to_string) else {
                continue;
            };
            let Ok(path) = CollectedPath::parse(&relative) else {
                refused.push(json!({"path": relative, "reason": "the name cannot be collected"}));
                continue;
            };
            if !settings.patterns.collects(&path) {
                continue;
            }
            if meta.len() > settings.max_file_bytes {
                refused.push(json!({"path": relative, "reason": format!(
                    "the file is {} bytes, over the {}-byte cap per file", meta.len(), settings.max_file_bytes)}));
                continue;
            }
            if found.len() >= MAX_FILES {
                refused.push(json!({"path": relative, "reason": format!("more than {MAX_FILES} matching files")}));
                continue;
            }
            let file = entry.path();
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let (sha256, size) = match cache.get(&file) {
                Some((size, at, sha)) if *size == meta.len() && *at == modified => {
                    (sha.clone(), *size)
                }
                _ => match open_owned(&file, owner).and_then(|(f, _)| hash_of(f)) {
                    Ok(hashed) => hashed,
                    Err(_) => continue,
                },
            };
            cache.insert(file.clone(), (size, modified, sha256.clone()));
            seen.insert(file.clone());
            found.push(Found {
                path: relative,
                file,
                size,
                sha256,
            });
        }
    }
    cache.retain(|file, _| seen.contains(file));
    found.sort_by(|a, b| a.path.cmp(&b.path));
    (found, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_matching_files_and_never_follows_links_or_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("labels/deep")).unwrap();
        std::fs::create_dir_all(root.join(".cache")).unwrap();
        std::fs::write(root.join("a.slp"), b"one").unwrap();
        std::fs::write(root.join("labels/deep/b.slp"), b"two").unwrap();
        std::fs::write(root.join("notes.txt"), b"no").unwrap();
        std::fs::write(root.join(".cache/c.slp"), b"hidden").unwrap();
        std::fs::write(root.join(".hidden.slp"), b"hidden").unwrap();
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(secret.path(), root.join("stolen.slp")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        let settings = Settings {
            patterns: Patterns::parse("*.slp").unwrap(),
            max_file_bytes: 1000,
        };
        std::fs::write(root.join("huge.slp"), vec![0u8; 1001]).unwrap();
        let mut cache = HashCache::new();
        let (found, refused) = scan(root, &settings, &mut cache);
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.slp", "labels/deep/b.slp"]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("over the 1000-byte cap"));
        assert_eq!(found[0].sha256, hex::encode(Sha256::digest(b"one")));
        assert_eq!(cache.len(), 2);
        // Read through a descriptor that refuses a link, even one swapped in after the scan.
        let owner = owner_of(root).unwrap();
        assert!(open_owned(&root.join("stolen.slp"), owner).is_err());
        assert!(open_owned(&root.join("a.slp"), owner).is_ok());
        assert!(
            open_owned(&root.join("a.slp"), owner + 1).is_err(),
            "another user's file"
        );
    }
}
