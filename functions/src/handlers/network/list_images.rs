//! `GET /api/hyperstack/images[?region=]` (API key or admin): images this deployment may
//! launch (the account's own and those tagged `gpufleet:image`).

use shared::AppState;

use super::views::LaunchableImageView;
use crate::http::{data, query_param, respond_status, ApiError, Principal, Request, Response};
use crate::openapi::ApiDoc;

pub fn api() -> ApiDoc {
    ApiDoc::new("Images this deployment may launch")
        .query(
            "region",
            "An AWS region such as `us-east-1`; another than the deployment's lists none.",
            serde_json::json!({"type": "string", "minLength": 1, "maxLength": 32,
                               "pattern": "^[a-z0-9-]+$"}),
        )
        .answers_list::<LaunchableImageView>(200, "The images.")
        // 503: no cloud here (local mode).
        .errors(&[400, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond_status(async {
        if let Some(region) = query_param(&req, "region") {
            let ok = !region.is_empty()
                && region.len() <= 32
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(ApiError::bad_request(
                    "region must be an AWS region such as us-east-1",
                ));
            }
        }
        let images = state
            .network
            .images(query_param(&req, "region").as_deref())
            .await?;
        Ok((
            data(&super::views::images(&images)),
            "Images retrieved successfully",
        ))
    })
    .await
}
