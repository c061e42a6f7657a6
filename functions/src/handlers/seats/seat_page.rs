//! `GET /seat` (seat cookie) and `GET /seat/{token}` (the private seat link): the
//! participant's VM, its PIN, how to connect and its current state. Opening the link also
//! sets the cookie, so this browser can come back through `/seat`.

use http::StatusCode;
use lambda_http::RequestExt;
use shared::usecases::participant;
use shared::{AppState, Error};

use crate::http::{
    cookie, respond, seat_credential, set_seat_cookie, ApiError, Principal, Request, Response,
    SEAT_COOKIE,
};
use crate::openapi::ApiDoc;
use crate::pages::{render_no_seat, render_seat};

pub fn api() -> ApiDoc {
    ApiDoc::new("A participant's seat: their VM, PIN and how to connect")
        .html(200, "The seat page.")
        .html(404, "No seat for this link or cookie.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let Some((token, base)) = seat_credential(&req) else {
            return render_no_seat();
        };
        let vm = match participant::seat((&state).into(), &token).await {
            Ok(vm) => vm,
            Err(Error::NotFound(_)) => return render_no_seat(),
            Err(e) => return Err(ApiError::Core(e)),
        };
        let since = participant::live_since((&state).into());
        let mut resp = render_seat(StatusCode::OK, &vm, since, base, None, None)?;
        // Remember a seat opened by its link on this device, but never replace another seat
        // this browser holds: a link someone else sent must not take over this one's.
        if req.path_parameters().first("token").is_some() && cookie(&req, SEAT_COOKIE).is_none() {
            set_seat_cookie(&req, &mut resp, &token);
        }
        Ok(resp)
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn unknown_and_malformed_seats_are_404() {
        let t = TestState::new();
        for name in ["seat-page/cookie.json", "seat-page/link.json"] {
            let resp = serve(t.state.clone(), event(name)).await;
            assert_eq!(resp.status(), 404, "{name}");
            assert!(body_text(&resp).contains("No seat here"));
        }
    }
}
