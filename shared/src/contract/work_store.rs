//! The work-store contract: what collection relies on, run against the local store (files
//! under the data directory) and S3 (on the emulator, over HTTP).

use async_trait::async_trait;

use crate::ports::{UploadUrl, WorkStore};

/// How a test hands bytes to an upload URL and reads a download URL: HTTP for S3, the
/// local store's own entry points when no server runs.
#[async_trait]
pub trait UrlClient: Send + Sync {
    async fn put(&self, url: &UploadUrl, bytes: Vec<u8>) -> bool;
    async fn get(&self, url: &str) -> Option<Vec<u8>>;
}

const TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs every check against an empty store.
pub async fn run_work_store(store: &dyn WorkStore, urls: &dyn UrlClient) {
    uploads_land_under_their_key(store, urls).await;
    small_objects_and_listing_by_prefix(store).await;
    exports_are_written_in_parts_and_downloaded(store, urls).await;
    an_aborted_export_leaves_nothing(store).await;
    delete_takes_only_the_prefix(store).await;
}

async fn uploads_land_under_their_key(store: &dyn WorkStore, urls: &dyn UrlClient) {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let url = store
        .upload_url("work/vm-1/labels/a b.slp", bytes.len() as u64, TTL)
        .await
        .expect("work store call");
    assert!(url.expires_at > 0);
    assert!(
        urls.put(&url, bytes.clone()).await,
        "the upload was refused"
    );
    assert_eq!(
        store
            .get("work/vm-1/labels/a b.slp")
            .await
            .expect("work store call"),
        Some(bytes.clone())
    );
    // A second version replaces the first.
    let url = store
        .upload_url("work/vm-1/labels/a b.slp", 3, TTL)
        .await
        .expect("work store call");
    assert!(urls.put(&url, b"new".to_vec()).await);
    assert_eq!(
        store
            .get("work/vm-1/labels/a b.slp")
            .await
            .expect("work store call"),
        Some(b"new".to_vec())
    );
}

async fn small_objects_and_listing_by_prefix(store: &dyn WorkStore) {
    assert_eq!(
        store.get("vms/nobody.json").await.expect("work store call"),
        None
    );
    store
        .put("vms/vm-1.json", b"{}".to_vec())
        .await
        .expect("work store call");
    store
        .put("work/vm-10/x.slp", b"ten".to_vec())
        .await
        .expect("work store call");
    store
        .put("work/vm-1/z/deep.slp", b"deep".to_vec())
        .await
        .expect("work store call");
    assert_eq!(
        store.get("vms/vm-1.json").await.expect("work store call"),
        Some(b"{}".to_vec())
    );
    let listed: Vec<(String, u64)> = store
        .list("work/vm-1/")
        .await
        .expect("work store call")
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(
        listed,
        [
            ("work/vm-1/labels/a b.slp".to_string(), 3),
            ("work/vm-1/z/deep.slp".to_string(), 4)
        ]
    );
    let all = store.list("work/").await.expect("work store call");
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(store
        .list("nothing-here/")
        .await
        .expect("work store call")
        .is_empty());
}

async fn exports_are_written_in_parts_and_downloaded(store: &dyn WorkStore, urls: &dyn UrlClient) {
    // Over one 8 MiB part, so S3 assembles at least two.
    let chunk: Vec<u8> = (0..=250u8).cycle().take(3 << 20).collect();
    let mut export = store
        .start_export("exports/test.zip")
        .await
        .expect("work store call");
    let mut expected = Vec::new();
    for i in 0..3u8 {
        let mut part = chunk.clone();
        part[0] = i;
        expected.extend_from_slice(&part);
        export.write(part).await.expect("work store call");
    }
    export
        .write(b"tail".to_vec())
        .await
        .expect("work store call");
    expected.extend_from_slice(b"tail");
    let url = export.finish(TTL).await.expect("work store call");
    let got = urls.get(&url).await.expect("the download URL works");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the download is not what was written");
}

async fn an_aborted_export_leaves_nothing(store: &dyn WorkStore) {
    let mut export = store
        .start_export("exports/aborted.zip")
        .await
        .expect("work store call");
    export
        .write(b"half".to_vec())
        .await
        .expect("work store call");
    export.abort().await;
    assert_eq!(
        store
            .get("exports/aborted.zip")
            .await
            .expect("work store call"),
        None
    );
    assert!(store
        .list("exports/")
        .await
        .expect("work store call")
        .iter()
        .all(|o| o.key != "exports/aborted.zip"));
}

async fn delete_takes_only_the_prefix(store: &dyn WorkStore) {
    assert_eq!(
        store
            .delete_prefix("work/vm-1/")
            .await
            .expect("work store call"),
        2
    );
    assert!(store
        .list("work/vm-1/")
        .await
        .expect("work store call")
        .is_empty());
    assert_eq!(
        store.list("work/").await.expect("work store call").len(),
        1,
        "vm-10 stays"
    );
    assert_eq!(
        store.delete_prefix("work/").await.expect("work store call"),
        1
    );
    assert_eq!(
        store.delete_prefix("work/").await.expect("work store call"),
        0
    );
    assert!(store
        .get("vms/vm-1.json")
        .await
        .expect("work store call")
        .is_some());
}
