//! `POST /api/v1/instances` (API key): create an instance from an offer. 201 with the
//! instance; an `Idempotency-Key` header makes a retry return the first instance.

use http::StatusCode;
use shared::domain::instances::NewInstance;
use shared::usecases::instances;
use shared::AppState;

use crate::http::{idempotency_key, json_body, respond_v1, Principal, Request, Response, V1Ok};
use crate::views::instance_json;

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async move {
        let caller = principal.user()?;
        let body: serde_json::Value = json_body(req)?;
        let input = NewInstance::parse(&body)?;
        let created = instances::create(state.into(), caller, input, idempotency_key(req)?).await?;
        Ok(V1Ok {
            status: StatusCode::CREATED,
            message: "Instance created successfully",
            data: Some(instance_json(&created.instance)),
            replayed: created.replayed,
        })
    })
    .await
}
