//! `POST /api/collect/done` `{hostname, uploaded: [{path, size, sha256}], refused: [{path,
//! reason}], answering?}` + VM token: step two of a sync. The VM's manifest is rebuilt from
//! what the store holds; `answering` is the final-sync request (`requested_at` of the
//! long-poll's `collect`) this sync answers.

use serde::Deserialize;
use serde_json::json;
use shared::domain::collect::RefusedFile;
use shared::usecases::collect;
use shared::AppState;

use super::collect_plan::File;
use crate::http::{json_body, ok_json, respond, Principal, Request, Response};

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    uploaded: Vec<File>,
    #[serde(default)]
    refused: Vec<RefusedFile>,
    answering: Option<i64>,
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let manifest = collect::finish_sync(
            (&state).into(),
            principal.vm()?,
            body.uploaded.into_iter().map(Into::into).collect(),
            body.refused,
            body.answering,
        )
        .await?;
        ok_json(json!({
            "files": manifest.files.len(),
            "bytes": manifest.bytes(),
            "last_sync_at": manifest.last_sync_at,
        }))
    })
    .await
}
