//! `POST /api/collect/plan` `{hostname, files: [{path, size, sha256}]}` + VM token: step one
//! of a sync. Answers the collection settings (so the agent needs none of its own) and, per
//! offered file, an upload URL (new or changed), `unchanged`, or a refusal with its reason.
//! URLs only ever point under this VM's own prefix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared::domain::collect::RefusedFile;
use shared::usecases::collect::{self, OfferedFile, MAX_FILES_PER_SYNC};
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{json_body, ok_typed, respond, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// A file in the VM's working directory.
#[derive(Deserialize, ToSchema)]
pub struct SyncFile {
    /// Relative to the working directory; a name that could leave it, or that the patterns
    /// do not collect, is refused (with the reason), not an error.
    pub path: String,
    /// Its size in bytes: the upload must be exactly this long.
    pub size: u64,
    /// The hex SHA-256 of its content; anything else is refused (with the reason).
    pub sha256: String,
}

impl From<SyncFile> for OfferedFile {
    fn from(f: SyncFile) -> Self {
        OfferedFile {
            path: f.path,
            size: f.size,
            sha256: f.sha256,
        }
    }
}

/// The files a VM offers to sync.
#[derive(Deserialize, ToSchema)]
pub struct SyncPlanRequest {
    /// The VM's hostname; its bearer token must be this VM's.
    #[schema(value_type = RequiredText)]
    #[allow(dead_code)] // checked by the router (`Access::Vm`)
    hostname: String,
    /// Every file matching the collect patterns (at most 2000; none when omitted).
    #[serde(default)]
    #[schema(max_items = 2000)]
    files: Vec<SyncFile>,
}

// `max_items` above repeats the use case's limit.
const _: () = assert!(MAX_FILES_PER_SYNC == 2000);

/// Always `PUT`.
#[derive(Serialize, ToSchema)]
pub enum UploadMethod {
    #[serde(rename = "PUT")]
    Put,
}

/// Where to upload one file.
#[derive(Serialize, ToSchema)]
pub struct UploadTarget {
    pub path: String,
    /// A short-lived URL under this VM's own prefix.
    pub url: String,
    pub method: UploadMethod,
    /// Headers the upload must carry.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working (ms since the epoch).
    pub expires_at: i64,
}

/// The collection settings and what to do with each offered file.
#[derive(Serialize, ToSchema)]
pub struct SyncPlanReply {
    /// File-name patterns collected (GPUFLEET_COLLECT_PATTERNS); none: collect nothing.
    pub patterns: Vec<String>,
    /// How often to sync.
    pub interval_seconds: u64,
    /// Largest file collected.
    pub max_file_bytes: u64,
    /// Most bytes collected from one VM.
    pub max_vm_bytes: u64,
    /// New or changed files: upload each, then report them to `/api/collect/done`.
    pub uploads: Vec<UploadTarget>,
    /// Paths collected already, byte for byte.
    pub unchanged: Vec<String>,
    /// Files that are not collected, with the reason.
    pub refused: Vec<RefusedFile>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Step one of a VM's sync: upload URLs for its new or changed files")
        .json_body::<SyncPlanRequest>()
        .answers::<SyncPlanReply>(200, "The settings and the plan.")
        // 429: more plans a minute than the sync interval needs, from this VM.
        .errors(&[429])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: SyncPlanRequest = json_body(&req)?;
        let config = &state.config.collect;
        let plan = collect::plan_sync(
            (&state).into(),
            principal.vm()?,
            body.files.into_iter().map(Into::into).collect(),
        )
        .await?;
        ok_typed(&SyncPlanReply {
            patterns: config
                .patterns
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            interval_seconds: config.interval.as_secs(),
            max_file_bytes: config.caps.per_file,
            max_vm_bytes: config.caps.per_vm,
            uploads: plan
                .uploads
                .into_iter()
                .map(|(path, url)| UploadTarget {
                    path,
                    url: url.url,
                    method: UploadMethod::Put,
                    headers: url.headers.into_iter().collect(),
                    expires_at: url.expires_at,
                })
                .collect(),
            unchanged: plan.unchanged,
            refused: plan.refused,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;
    use shared::adapters::local::work_store::LOCAL_STORE_PATH;

    fn token_of(url: &str) -> &str {
        url.split(LOCAL_STORE_PATH).nth(1).unwrap()
    }

    #[tokio::test]
    async fn a_sync_uploads_under_the_vms_own_prefix_and_the_zip_has_it() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("collect-plan/two-files.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let plan = body_json(&resp);
        assert_eq!(plan["patterns"], serde_json::json!(["*.slp"]));
        let uploads = plan["uploads"].as_array().unwrap();
        assert_eq!(uploads.len(), 1);
        assert_eq!(uploads[0]["path"], "labels/session1.slp");
        assert_eq!(plan["refused"][0]["path"], "notes.txt");
        assert!(plan["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("GPUFLEET_COLLECT_PATTERNS"));

        // Nothing is collected until the bytes arrive; then the size must match.
        let no = serve(t.state.clone(), event("scp-client/json.json")).await;
        assert_eq!(no.status(), 404);
        let token = token_of(uploads[0]["url"].as_str().unwrap());
        assert!(t
            .work
            .accept_upload(token, b"label".to_vec())
            .await
            .is_err());
        t.work
            .accept_upload(token, b"labels".to_vec())
            .await
            .unwrap();
        let done = serve(t.state.clone(), event("collect-done/one-file.json")).await;
        assert_eq!(done.status(), 200, "{}", body_text(&done));
        assert_eq!(body_json(&done)["files"], 1);

        // The same file again is unchanged: no second upload.
        let again = body_json(&serve(t.state.clone(), event("collect-plan/two-files.json")).await);
        assert!(again["uploads"].as_array().unwrap().is_empty());
        assert_eq!(
            again["unchanged"],
            serde_json::json!(["labels/session1.slp"])
        );

        let resp = serve(t.state.clone(), event("scp-client/json.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let export = body_json(&resp);
        assert_eq!(export["files"], 1);
        assert_eq!(export["vms"][0]["folder"], "vm-1");
        let (path, _) = t
            .work
            .open_download(token_of(export["url"].as_str().unwrap()))
            .unwrap();
        let zip = std::fs::read(path).unwrap();
        let needle = b"vm-1/labels/session1.slplabels";
        assert!(zip.windows(needle.len()).any(|w| w == needle));

        // The browser gets a redirect to the same kind of URL.
        let resp = serve(t.state.clone(), event("scp-client/zip.json")).await;
        assert_eq!(resp.status(), 303);
        assert!(resp.headers()["location"]
            .to_str()
            .unwrap()
            .contains(LOCAL_STORE_PATH));

        // Deleted: nothing to download any more.
        let resp = serve(t.state.clone(), event("delete-collected/json.json")).await;
        assert_eq!(resp.status(), 200);
        assert!(body_json(&resp)["deleted_objects"].as_u64().unwrap() >= 2);
        let resp = serve(t.state.clone(), event("scp-client/json.json")).await;
        assert_eq!(resp.status(), 404);
    }

    #[tokio::test]
    async fn names_that_could_leave_the_folder_are_refused_and_nothing_is_granted() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("collect-plan/traversal.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let plan = body_json(&resp);
        assert!(plan["uploads"].as_array().unwrap().is_empty());
        let refused = plan["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 3, "{refused:?}");
        for r in refused {
            assert!(
                r["reason"].as_str().unwrap().starts_with("file name"),
                "{r}"
            );
        }
    }

    #[tokio::test]
    async fn a_vm_token_cannot_ask_for_another_vms_prefix() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        t.running_vm("vm-2").await;
        let resp = serve(t.state.clone(), event("collect-plan/other-vm.json")).await;
        assert_eq!(resp.status(), 401);
        assert!(t.work.root().read_dir().is_err(), "nothing was written");
    }

    #[tokio::test]
    async fn the_download_needs_the_admin_and_something_collected() {
        let t = TestState::new();
        let resp = serve(t.state.clone(), event("scp-client/no-auth.json")).await;
        assert_eq!(resp.status(), 401);
        let resp = serve(t.state.clone(), event("scp-client/zip.json")).await;
        assert_eq!(resp.status(), 404);
        assert!(body_text(&resp).contains("no VM has synced a file yet"));
    }

    #[tokio::test]
    async fn over_the_caps_is_refused_with_the_reason() {
        let mut t = TestState::new();
        let mut config = (*t.state.config).clone();
        config.collect.caps = shared::domain::collect::Caps {
            per_file: 5,
            per_vm: 100,
        };
        t.state.config = std::sync::Arc::new(config);
        t.running_vm("vm-1").await;
        let plan = body_json(&serve(t.state.clone(), event("collect-plan/two-files.json")).await);
        assert!(plan["uploads"].as_array().unwrap().is_empty());
        let reason = plan["refused"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("over the 5-byte cap"), "{reason}");
    }

    #[tokio::test]
    async fn plans_are_limited_per_vm_and_minute() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let allowed = shared::usecases::collect::plans_per_minute(&t.state.config.collect);
        for _ in 0..allowed {
            let resp = serve(t.state.clone(), event("collect-plan/two-files.json")).await;
            assert_eq!(resp.status(), 200);
        }
        let resp = serve(t.state.clone(), event("collect-plan/two-files.json")).await;
        assert_eq!(resp.status(), 429, "{}", body_text(&resp));
        assert!(body_text(&resp).contains("syncs a minute"));
        assert!(resp.headers().contains_key("retry-after"));
    }

    /// What a VM really stored counts against its cap, not what it announced.
    #[tokio::test]
    async fn the_cap_counts_what_the_store_holds() {
        let mut t = TestState::new();
        let mut config = (*t.state.config).clone();
        config.collect.caps = shared::domain::collect::Caps {
            per_file: 100,
            per_vm: 100,
        };
        t.state.config = std::sync::Arc::new(config);
        t.running_vm("vm-1").await;
        // An overshooting upload, as a presigned PUT that S3 did not hold to its length.
        use shared::ports::WorkStore as _;
        t.work
            .put("work/vm-1/big.slp", vec![0u8; 99])
            .await
            .unwrap();
        let plan = body_json(&serve(t.state.clone(), event("collect-plan/two-files.json")).await);
        assert!(plan["uploads"].as_array().unwrap().is_empty(), "{plan}");
        let reason = plan["refused"][0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("99 bytes are collected from this VM already"),
            "{reason}"
        );
    }
}
