//! `GET /api/v1/offers/search` (API key): offers across providers, filtered and sorted
//! (see `OfferQuery`); bad parameters are a 400 naming the parameter.

use lambda_http::RequestExt;
use shared::domain::offers::OfferQuery;
use shared::usecases::instances;
use shared::AppState;

use crate::http::{respond_v1, Principal, Request, Response, V1Ok};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    let (state, req) = (&state, &req);
    respond_v1(async {
        let params = req.query_string_parameters();
        let pairs: Vec<(String, String)> = params
            .iter()
            .flat_map(|(k, _)| {
                params
                    .all(k)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |v| (k.to_string(), v.to_string()))
            })
            .collect();
        let query = OfferQuery::parse(&pairs)?;
        let offers = instances::search(state.into(), &query).await?;
        V1Ok::ok("Offers retrieved successfully", serde_json::json!(offers))
    })
    .await
}
