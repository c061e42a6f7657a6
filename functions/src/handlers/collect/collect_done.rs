//! `POST /api/collect/done` `{hostname, uploaded: [{path, size, sha256}], refused: [{path,
//! reason}], answering?}` + VM token: step two of a sync. The VM's manifest is rebuilt from
//! what the store holds; `answering` is the final-sync request (`requested_at` of the
//! long-poll's `collect`) this sync answers.

use serde::{Deserialize, Serialize};
use shared::domain::collect::RefusedFile;
use shared::usecases::collect;
use shared::AppState;
use utoipa::ToSchema;

use super::collect_plan::SyncFile;
use crate::http::{json_body, ok_typed, respond, Principal, Request, RequiredText, Response};
use crate::openapi::ApiDoc;

/// What a VM's sync did.
#[derive(Deserialize, ToSchema)]
pub struct SyncDoneRequest {
    /// The VM's hostname; its bearer token must be this VM's.
    #[schema(value_type = RequiredText)]
    #[allow(dead_code)] // checked by the router (`Access::Vm`)
    hostname: String,
    /// The files it uploaded (their hashes are kept for the next plan); what counts is
    /// what the store holds.
    #[serde(default)]
    uploaded: Vec<SyncFile>,
    /// Files it did not upload, and why (the first 100 are kept, shown to the admin).
    #[serde(default)]
    refused: Vec<RefusedFile>,
    /// The final-sync request (`requested_at` of the long-poll's `collect`) this sync
    /// answers.
    answering: Option<i64>,
}

/// What is collected from this VM now.
#[derive(Serialize, ToSchema)]
pub struct SyncDoneReply {
    /// Files held.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// This sync's time (ms since the epoch).
    pub last_sync_at: Option<i64>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Step two of a VM's sync: what it uploaded and what was refused")
        .json_body::<SyncDoneRequest>()
        .answers::<SyncDoneReply>(200, "What is collected from this VM now.")
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: SyncDoneRequest = json_body(&req)?;
        let manifest = collect::finish_sync(
            (&state).into(),
            principal.vm()?,
            body.uploaded.into_iter().map(Into::into).collect(),
            body.refused,
            body.answering,
        )
        .await?;
        ok_typed(&SyncDoneReply {
            files: manifest.files.len(),
            bytes: manifest.bytes(),
            last_sync_at: manifest.last_sync_at,
        })
    })
    .await
}
