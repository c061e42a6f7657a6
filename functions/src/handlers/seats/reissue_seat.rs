//! `POST /api/seats/{hostname}/reissue` (admin): a new private seat link for the participant
//! of `hostname` (they lost theirs); the old link and cookie stop working. The link is in
//! the answer once, for the organiser to pass on.

use serde_json::json;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{no_store, ok_json, path_param, respond, site_url, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let hostname = path_param(&req, "hostname")?;
        let (vm, seat) = admin::reissue_seat((&state).into(), &hostname).await?;
        let mut resp = ok_json(json!({
            "hostname": vm.hostname,
            "email": vm.assignment.as_ref().map(|a| a.email.clone()),
            "seat_link": format!("{}/seat/{}", site_url(&req), seat.as_str()),
        }))?;
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}
