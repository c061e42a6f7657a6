//! `GET /api/scp-client` (admin): everything participants' agents collected, as one zip with
//! a folder per VM (`<hostname> (<email>)`). The zip is assembled in the work store (no
//! response-size limit) and the answer is a 303 to a short-lived download URL; with
//! `Accept: application/json` the URL and the manifest (files, sizes, VMs that missed the
//! final sync). 404 when nothing was collected.

use http::StatusCode;
use serde::Serialize;
use shared::domain::collect::RefusedFile;
use shared::usecases::collect;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{
    ok_typed, respond, typed_json_response, wants_json, Principal, Request, Response,
};
use crate::openapi::ApiDoc;

/// One file in the zip.
#[derive(Serialize, ToSchema)]
pub struct CollectedFileView {
    /// Relative to the VM's folder.
    pub path: String,
    pub size: u64,
}

/// What one VM contributed.
#[derive(Serialize, ToSchema)]
pub struct CollectedVmView {
    pub hostname: String,
    /// The participant's email, when the VM was claimed.
    pub email: Option<String>,
    /// The VM's folder in the zip.
    pub folder: String,
    pub files: Vec<CollectedFileView>,
    pub bytes: u64,
    /// When the agent last finished a sync (ms since the epoch).
    pub last_sync_at: Option<i64>,
    /// It did not answer the final sync before a destroy: its work is as of its last sync.
    pub missed_final_sync: bool,
    /// Files its agent would not upload, and why.
    pub refused: Vec<RefusedFile>,
}

/// The download and its manifest.
#[derive(Serialize, ToSchema)]
pub struct CollectedExport {
    /// The zip: a short-lived download URL.
    pub url: String,
    pub expires_in_seconds: u64,
    /// Files in the zip, over all VMs.
    pub files: usize,
    pub bytes: u64,
    /// Per VM, in hostname order.
    pub vms: Vec<CollectedVmView>,
    /// Hostnames of the VMs that missed the final sync.
    pub did_not_answer: Vec<String>,
}

/// The body of the 303, for clients that read it.
#[derive(Serialize)]
struct DownloadRedirect<'a> {
    url: &'a str,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Download everything participants' agents collected, as one zip")
        .redirect(303, "To the zip's short-lived download URL (browsers).")
        .answers::<CollectedExport>(
            200,
            "With `Accept: application/json`: the URL and what the zip holds.",
        )
        .errors(&[404])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let export = collect::export_zip((&state).into()).await?;
        if wants_json(&req) {
            let vms: Vec<CollectedVmView> = export
                .vms
                .iter()
                .map(|v| CollectedVmView {
                    hostname: v.manifest.hostname.clone(),
                    email: v.manifest.email.clone(),
                    folder: v.manifest.folder(),
                    files: v
                        .stored
                        .iter()
                        .map(|f| CollectedFileView {
                            path: f.path.clone(),
                            size: f.size,
                        })
                        .collect(),
                    bytes: v.bytes(),
                    last_sync_at: v.manifest.last_sync_at,
                    missed_final_sync: v.manifest.missed_final_sync.is_some(),
                    refused: v.manifest.refused.clone(),
                })
                .collect();
            let missed: Vec<String> = export
                .vms
                .iter()
                .filter(|v| v.manifest.missed_final_sync.is_some())
                .map(|v| v.manifest.hostname.clone())
                .collect();
            return ok_typed(&CollectedExport {
                url: export.url.clone(),
                expires_in_seconds: collect::DOWNLOAD_URL_TTL.as_secs(),
                files: export.vms.iter().map(|v| v.stored.len()).sum::<usize>(),
                bytes: export.vms.iter().map(|v| v.bytes()).sum::<u64>(),
                vms,
                did_not_answer: missed,
            });
        }
        let mut resp = typed_json_response(
            StatusCode::SEE_OTHER,
            &DownloadRedirect { url: &export.url },
        );
        resp.headers_mut().insert(
            http::header::LOCATION,
            http::HeaderValue::from_str(&export.url)
                .map_err(|e| shared::Error::Internal(e.into()))?,
        );
        Ok(resp)
    })
    .await
}
