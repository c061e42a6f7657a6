//! `GET /api/scp-client` (admin): everything participants' agents collected, as one zip with
//! a folder per VM (`<hostname> (<email>)`). The zip is assembled in the work store (no
//! response-size limit) and the answer is a 303 to a short-lived download URL; with
//! `Accept: application/json` the URL and the manifest (files, sizes, VMs that missed the
//! final sync). 404 when nothing was collected.

use http::StatusCode;
use serde_json::json;
use shared::usecases::collect;
use shared::AppState;

use crate::http::{json_response, respond, wants_json, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let export = collect::export_zip((&state).into()).await?;
        if wants_json(&req) {
            let vms: Vec<_> = export
                .vms
                .iter()
                .map(|v| {
                    json!({
                        "hostname": v.manifest.hostname,
                        "email": v.manifest.email,
                        "folder": v.manifest.folder(),
                        "files": v.stored.iter().map(|f| json!({"path": f.path, "size": f.size})).collect::<Vec<_>>(),
                        "bytes": v.bytes(),
                        "last_sync_at": v.manifest.last_sync_at,
                        "missed_final_sync": v.manifest.missed_final_sync.is_some(),
                        "refused": v.manifest.refused,
                    })
                })
                .collect();
            let missed: Vec<&str> = export
                .vms
                .iter()
                .filter(|v| v.manifest.missed_final_sync.is_some())
                .map(|v| v.manifest.hostname.as_str())
                .collect();
            return Ok(json_response(
                StatusCode::OK,
                &json!({
                    "url": export.url,
                    "expires_in_seconds": collect::DOWNLOAD_URL_TTL.as_secs(),
                    "files": export.vms.iter().map(|v| v.stored.len()).sum::<usize>(),
                    "bytes": export.vms.iter().map(|v| v.bytes()).sum::<u64>(),
                    "vms": vms,
                    "did_not_answer": missed,
                }),
            ));
        }
        let mut resp = json_response(
            StatusCode::SEE_OTHER,
            &json!({"url": export.url}),
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
