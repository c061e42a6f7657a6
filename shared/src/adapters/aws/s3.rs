//! Participants' work on AWS: an S3 bucket. VMs get presigned PUT URLs (they hold no S3
//! credentials), the API writes the manifests, and the download is assembled with a
//! multipart upload (parts of 8 MiB, so no response-size limit applies) and handed out as
//! a presigned GET URL.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use crate::error::{Error, Result};
use crate::ports::{ExportUpload, StoredObject, UploadUrl, WorkStore};

/// A multipart part (S3 wants at least 5 MiB for every part but the last).
const PART_BYTES: usize = 8 << 20;

#[derive(Clone)]
pub struct S3WorkStore {
    client: Client,
    bucket: String,
}

impl S3WorkStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3WorkStore {
            client,
            bucket: bucket.into(),
        }
    }
}

fn s3_error<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl Fn(E) -> Error {
    move |e| Error::Internal(anyhow::anyhow!("S3 {what}: {}", DisplayErrorContext(e)))
}

fn presigning(ttl: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(ttl)
        .map_err(|e| Error::Internal(anyhow::anyhow!("presigning: {e}")))
}

fn millis_in(ttl: Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    now + ttl.as_millis() as i64
}

#[async_trait]
impl WorkStore for S3WorkStore {
    async fn upload_url(&self, key: &str, size: u64, ttl: Duration) -> Result<UploadUrl> {
        let size = i64::try_from(size).map_err(|_| Error::validation("file too large"))?;
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(size)
            .presigned(presigning(ttl)?)
            .await
            .map_err(s3_error("presigning PutObject"))?;
        Ok(UploadUrl {
            url: presigned.uri().to_string(),
            headers: presigned
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expires_at: millis_in(ttl),
        })
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(s3_error("PutObject"))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject")(e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("S3 GetObject body: {e}")))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(s3_error("ListObjectsV2"))?;
            for o in out.contents() {
                if let Some(key) = o.key() {
                    objects.push(StoredObject {
                        key: key.to_string(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    });
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let objects = self.list(prefix).await?;
        for batch in objects.chunks(1000) {
            let ids = batch
                .iter()
                .map(|o| {
                    ObjectIdentifier::builder()
                        .key(&o.key)
                        .build()
                        .map_err(|e| Error::Internal(anyhow::anyhow!("S3 object id: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| Error::Internal(anyhow::anyhow!("S3 delete request: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(s3_error("DeleteObjects"))?;
            if let Some(e) = out.errors().first() {
                return Err(Error::Internal(anyhow::anyhow!(
                    "S3 DeleteObjects refused {} object(s) (first: {} {})",
                    out.errors().len(),
                    e.key().unwrap_or("?"),
                    e.code().unwrap_or("?")
                )));
            }
        }
        Ok(objects.len() as u64)
    }

    async fn start_export(&self, key: &str) -> Result<Box<dyn ExportUpload>> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/zip")
            .send()
            .await
            .map_err(s3_error("CreateMultipartUpload"))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("S3 gave no upload id")))?
            .to_string();
        Ok(Box::new(S3Export {
            store: self.clone(),
            key: key.to_string(),
            upload_id,
            buffer: Vec::new(),
            parts: Vec::new(),
        }))
    }
}

struct S3Export {
    store: S3WorkStore,
    key: String,
    upload_id: String,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
}

impl S3Export {
    async fn send_part(&mut self, bytes: Vec<u8>) -> Result<()> {
        let number = i32::try_from(self.parts.len() + 1)
            .map_err(|_| Error::Internal(anyhow::anyhow!("too many parts")))?;
        let out = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(s3_error("UploadPart"))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }
}

#[async_trait]
impl ExportUpload for S3Export {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.buffer.extend_from_slice(&bytes);
        while self.buffer.len() >= PART_BYTES {
            let rest = self.buffer.split_off(PART_BYTES);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, ttl: Duration) -> Result<String> {
        let last = std::mem::take(&mut self.buffer);
        if !last.is_empty() || self.parts.is_empty() {
            self.send_part(last).await?;
        }
        let parts = std::mem::take(&mut self.parts);
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error("CompleteMultipartUpload"))?;
        let name = self
            .key
            .rsplit('/')
            .next()
            .unwrap_or("participants-work.zip");
        let presigned = self
            .store
            .client
            .get_object()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .response_content_disposition(format!("attachment; filename=\"{name}\""))
            .presigned(presigning(ttl)?)
            .await
            .map_err(s3_error("presigning GetObject"))?;
        Ok(presigned.uri().to_string())
    }

    async fn abort(self: Box<Self>) {
        let _ = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
    }
}
