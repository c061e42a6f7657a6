//! Participants' work in local mode: each object is a file under
//! `<data dir>/collected/<key>`, written to a temporary name, synced and renamed, so an
//! acknowledged upload survives a crash and a torn one is never seen. Upload and download
//! URLs are one-off tokens of this process's local server (`/local-store/<token>`), the
//! same shape as presigned S3 URLs: whoever holds one may PUT (or GET) that one object
//! until it expires, and nothing else.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use rand::RngCore as _;

use crate::domain::Millis;
use crate::error::{Error, Result};
use crate::ports::{Clock, ExportUpload, StoredObject, UploadUrl, WorkStore};

/// The path of the local server's object route; the server serves it with
/// [`LocalWorkStore::accept_upload`] and [`LocalWorkStore::open_download`].
pub const LOCAL_STORE_PATH: &str = "/local-store/";

#[derive(Clone)]
enum Grant {
    Upload { key: String, size: u64 },
    Download { key: String },
}

#[derive(Clone)]
pub struct LocalWorkStore {
    root: PathBuf,
    base_url: String,
    clock: Arc<dyn Clock>,
    grants: Arc<Mutex<HashMap<String, (Grant, Millis)>>>,
}

/// Why a PUT or GET on a local-store URL was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Unknown or expired token.
    NotFound,
    /// The body is not the size the URL was issued for.
    WrongSize { expected: u64, got: u64 },
}

impl LocalWorkStore {
    /// Objects under `root`; URLs start with `base_url` (the local server's own).
    pub fn new(root: PathBuf, base_url: &str, clock: Arc<dyn Clock>) -> Self {
        LocalWorkStore {
            root,
            base_url: base_url.trim_end_matches('/').to_string(),
            clock,
            grants: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn grant(&self, grant: Grant, ttl: Duration) -> (String, Millis) {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let now = self.clock.now_millis();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        grants.retain(|_, (_, until)| *until > now);
        grants.insert(token.clone(), (grant, expires_at));
        (
            format!("{}{LOCAL_STORE_PATH}{token}", self.base_url),
            expires_at,
        )
    }

    fn granted(&self, token: &str) -> Option<Grant> {
        let grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        match grants.get(token) {
            Some((grant, until)) if *until > self.clock.now_millis() => Some(grant.clone()),
            _ => None,
        }
    }

    /// The size an upload URL takes, when the token is a live upload grant (checked before a
    /// body is read, so a stranger cannot make the server buffer anything).
    pub fn upload_size(&self, token: &str) -> Option<u64> {
        match self.granted(token) {
            Some(Grant::Upload { size, .. }) => Some(size),
            _ => None,
        }
    }

    /// Stores the body of a PUT to an upload URL.
    pub async fn accept_upload(&self, token: &str, body: Vec<u8>) -> Result<(), Refused> {
        let Some(Grant::Upload { key, size }) = self.granted(token) else {
            return Err(Refused::NotFound);
        };
        if body.len() as u64 != size {
            return Err(Refused::WrongSize {
                expected: size,
                got: body.len() as u64,
            });
        }
        self.put(&key, body).await.map_err(|e| {
            tracing::error!(error = ?e, "storing an upload");
            Refused::NotFound
        })
    }

    /// The file behind a download URL, and the name to offer it under.
    pub fn open_download(&self, token: &str) -> Result<(PathBuf, String), Refused> {
        let Some(Grant::Download { key }) = self.granted(token) else {
            return Err(Refused::NotFound);
        };
        let path = self.path_of(&key).map_err(|_| Refused::NotFound)?;
        let name = key.rsplit('/').next().unwrap_or("download").to_string();
        Ok((path, name))
    }

    /// The file of `key`; a key that could leave the root is an internal error (keys are
    /// built by `domain::collect`, never taken from a request).
    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let relative = Path::new(key);
        if key.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(Error::Internal(anyhow::anyhow!(
                "unsafe object key {key:?}"
            )));
        }
        Ok(self.root.join(relative))
    }
}

/// Writes `bytes` to `path` so a crash leaves the old file or the new one, never a torn one.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("an object has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut name = [0u8; 8];
    rand::rng().fill_bytes(&mut name);
    let temp = dir.join(format!(".upload-{}", hex::encode(name)));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Every file under `dir`, as keys relative to `root`, skipping temporary files.
fn walk(root: &Path, dir: &Path, out: &mut Vec<StoredObject>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() && !entry.file_name().to_string_lossy().starts_with(".upload-") {
            if let Ok(relative) = path.strip_prefix(root) {
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push(StoredObject {
                    key,
                    size: entry.metadata()?.len(),
                });
            }
        }
    }
    Ok(())
}

fn internal(what: &str) -> impl Fn(anyhow::Error) -> Error + '_ {
    move |e| Error::Internal(e.context(what.to_string()))
}

#[async_trait]
impl WorkStore for LocalWorkStore {
    async fn upload_url(&self, key: &str, size: u64, ttl: Duration) -> Result<UploadUrl> {
        self.path_of(key)?;
        let (url, expires_at) = self.grant(
            Grant::Upload {
                key: key.to_string(),
                size,
            },
            ttl,
        );
        Ok(UploadUrl {
            url,
            headers: Vec::new(),
            expires_at,
        })
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path_of(key)?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| Error::Internal(e.into()))?
            .map_err(internal("writing an object"))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Internal(
                anyhow::Error::from(e).context("reading an object"),
            )),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        // Walk only the deepest folder the prefix names.
        let folder = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let start = if folder.is_empty() {
            self.root.clone()
        } else {
            self.path_of(folder)?
        };
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &start, &mut out)?;
            out.retain(|o| o.key.starts_with(&prefix));
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok::<_, std::io::Error>(out)
        })
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .map_err(|e| Error::Internal(anyhow::Error::from(e).context("listing objects")))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let objects = self.list(prefix).await?;
        for o in &objects {
            let path = self.path_of(&o.key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Internal(
                        anyhow::Error::from(e).context("deleting an object"),
                    ))
                }
            }
        }
        Ok(objects.len() as u64)
    }

    async fn start_export(&self, key: &str) -> Result<Box<dyn ExportUpload>> {
        let path = self.path_of(key)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::Internal(anyhow::Error::from(e).context("creating exports")))?;
        let temp = dir.join(format!(".upload-{}", uuid::Uuid::new_v4()));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| Error::Internal(anyhow::Error::from(e).context("creating an export")))?;
        Ok(Box::new(LocalExport {
            store: self.clone(),
            key: key.to_string(),
            path,
            temp,
            file,
        }))
    }
}

struct LocalExport {
    store: LocalWorkStore,
    key: String,
    path: PathBuf,
    temp: PathBuf,
    file: tokio::fs::File,
}

#[async_trait]
impl ExportUpload for LocalExport {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<()> {
        use tokio::io::AsyncWriteExt as _;
        self.file
            .write_all(&bytes)
            .await
            .map_err(|e| Error::Internal(anyhow::Error::from(e).context("writing an export")))
    }

    async fn finish(mut self: Box<Self>, ttl: Duration) -> Result<String> {
        let io = |e: std::io::Error| {
            Error::Internal(anyhow::Error::from(e).context("finishing an export"))
        };
        self.file.sync_all().await.map_err(io)?;
        tokio::fs::rename(&self.temp, &self.path)
            .await
            .map_err(io)?;
        let (url, _) = self.store.grant(
            Grant::Download {
                key: self.key.clone(),
            },
            ttl,
        );
        Ok(url)
    }

    async fn abort(self: Box<Self>) {
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::SystemClock;
    use crate::contract::{run_work_store, UrlClient};

    /// The local server's object route, without the server.
    struct Direct(LocalWorkStore);

    #[async_trait]
    impl UrlClient for Direct {
        async fn put(&self, url: &UploadUrl, bytes: Vec<u8>) -> bool {
            let token = url.url.rsplit('/').next().unwrap_or_default();
            self.0.accept_upload(token, bytes).await.is_ok()
        }
        async fn get(&self, url: &str) -> Option<Vec<u8>> {
            let token = url.rsplit('/').next().unwrap_or_default();
            let (path, _) = self.0.open_download(token).ok()?;
            std::fs::read(path).ok()
        }
    }

    fn store(dir: &Path) -> LocalWorkStore {
        LocalWorkStore::new(
            dir.join("collected"),
            "http://127.0.0.1:9/",
            Arc::new(SystemClock),
        )
    }

    #[tokio::test]
    async fn keeps_the_work_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        run_work_store(&store, &Direct(store.clone())).await;
    }

    #[tokio::test]
    async fn an_upload_url_takes_exactly_its_size_and_only_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let url = store
            .upload_url("work/vm-1/a.slp", 4, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(url.url.starts_with("http://127.0.0.1:9/local-store/"));
        let token = url.url.rsplit('/').next().unwrap();
        assert_eq!(
            store.accept_upload(token, b"12345".to_vec()).await,
            Err(Refused::WrongSize {
                expected: 4,
                got: 5
            })
        );
        assert_eq!(
            store
                .accept_upload("0".repeat(64).as_str(), b"1234".to_vec())
                .await,
            Err(Refused::NotFound)
        );
        // An upload token is not a download token.
        assert!(store.open_download(token).is_err());
        store.accept_upload(token, b"1234".to_vec()).await.unwrap();
        assert_eq!(
            store.get("work/vm-1/a.slp").await.unwrap(),
            Some(b"1234".to_vec())
        );
    }

    #[tokio::test]
    async fn urls_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let url = store
            .upload_url("work/vm-1/a.slp", 1, Duration::ZERO)
            .await
            .unwrap();
        let token = url.url.rsplit('/').next().unwrap();
        assert_eq!(
            store.accept_upload(token, b"1".to_vec()).await,
            Err(Refused::NotFound)
        );
    }

    #[tokio::test]
    async fn keys_that_could_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        for key in ["../x", "work/../../x", "/etc/passwd", ""] {
            assert!(store.put(key, b"x".to_vec()).await.is_err(), "{key}");
            assert!(
                store
                    .upload_url(key, 1, Duration::from_secs(1))
                    .await
                    .is_err(),
                "{key}"
            );
        }
    }
}
