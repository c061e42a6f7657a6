//! `POST /api/v1/instances` (API key): create an instance from an offer. 201 with the
//! instance; an `Idempotency-Key` header makes a retry return the first instance.

use http::StatusCode;
use shared::domain::instances::{NewInstance, NewInstanceBody};
use shared::usecases::instances;
use shared::AppState;

use crate::http::{
    data, idempotency_key, json_body, respond_v1, Principal, Request, Response, V1Ok,
};
use crate::openapi::ApiDoc;
use crate::views::InstanceView;

pub fn api() -> ApiDoc {
    ApiDoc::new("Create an instance from an offer")
        .json_body::<NewInstanceBody>()
        .idempotency_key()
        .answers::<InstanceView>(
            201,
            "The instance (on a repeat with the same Idempotency-Key, the first one).",
        )
        // 400: invalid, unknown offer, over the GPU quota or refused by the provider; 409:
        // the offer is taken, or the key was used for another body; 503: no capacity.
        .errors(&[400, 409, 503])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async move {
        let caller = principal.user()?;
        // `NewInstance::parse` reads the body (a `NewInstanceBody`), naming the field it refuses.
        let body: serde_json::Value = json_body(req)?;
        let input = NewInstance::parse(&body)?;
        let created = instances::create(state.into(), caller, input, idempotency_key(req)?).await?;
        Ok(V1Ok {
            status: StatusCode::CREATED,
            message: "Instance created successfully",
            data: Some(data(&InstanceView::new(
                &created.instance,
                state.clock.now_millis(),
            ))),
            replayed: created.replayed,
        })
    })
    .await
}
