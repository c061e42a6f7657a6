//! `POST /api/v1/instances` (API key): create an instance from an offer. 201 with the
//! instance; an `Idempotency-Key` header makes a retry return the first instance.

use http::StatusCode;
use shared::usecases::instances;
use shared::AppState;

use crate::http::{json_body, respond_v1, ApiError, Principal, Request, Response, V1Ok};
use crate::views::instance_json;

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    let caller = principal.caller().cloned();
    respond_v1(async move {
        let caller = caller.ok_or(ApiError::Core(shared::Error::Unauthorized))?;
        let body: serde_json::Value = json_body(req)?;
        let idempotency_key = match req.headers().get("idempotency-key") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?,
            ),
        };
        let created = instances::create(state, &caller, &body, idempotency_key).await?;
        Ok(V1Ok {
            status: StatusCode::CREATED,
            message: "Instance created successfully",
            data: Some(instance_json(&created.instance)),
            replayed: created.replayed,
        })
    })
    .await
}
