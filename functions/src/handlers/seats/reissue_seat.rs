//! `POST /api/seats/{hostname}/reissue` (admin): a new private seat link for the participant
//! of `hostname` (they lost theirs); the old link and cookie stop working. The link is in
//! the answer once, for the organiser to pass on.

use shared::usecases::admin;
use shared::AppState;

use crate::http::{
    no_store, ok_typed, path_param, respond, site_url, Principal, Request, Response,
};
use crate::openapi::ApiDoc;

/// The participant's new seat link, shown this once.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ReissuedSeat {
    pub hostname: String,
    pub email: Option<String>,
    /// The new private link; the old one and its cookie stop working.
    pub seat_link: String,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A new private seat link for the participant of a VM")
        .answers::<ReissuedSeat>(200, "The new link.")
        .errors(&[409])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let hostname = path_param(&req, "hostname")?;
        let (vm, seat) = admin::reissue_seat((&state).into(), &hostname).await?;
        let mut resp = ok_typed(&ReissuedSeat {
            email: vm.assignment.as_ref().map(|a| a.email.clone()),
            seat_link: format!("{}/seat/{}", site_url(&req), seat.as_str()),
            hostname: vm.hostname,
        })?;
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}
