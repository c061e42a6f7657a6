//! `GET /api/v1/offers/search` (API key): offers across providers, filtered and sorted
//! (see `OfferQuery`); bad parameters are a 400 naming the parameter.

use lambda_http::RequestExt;
use serde_json::json;
use shared::domain::offers::{Offer, OfferQuery, MAX_OFFERS};
use shared::usecases::instances;
use shared::AppState;

use crate::http::{data, respond_v1, Principal, Request, Response, V1Ok};
use crate::openapi::ApiDoc;

/// What `str::trim` removes (`char::is_whitespace`): values are trimmed before they are
/// checked, so the patterns allow it around them.
const WS: &str = "[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// A string parameter matching `core` once trimmed.
fn trimmed(core: &str) -> serde_json::Value {
    json!({"type": "string", "pattern": format!("^{WS}*{core}{WS}*$")})
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Search GPU offers across providers, filtered and sorted")
        .query(
            "provider",
            "Only this provider's offers (see GET /api/v1/providers).",
            trimmed("[a-z0-9_]{1,32}"),
        )
        .query(
            "gpu_model",
            "Only this GPU model; case, spaces, `_` and `-` do not matter (`RTX 4090` = `rtx4090`).",
            json!({"type": "string", "minLength": 1}),
        )
        .query(
            "min_gpu_count",
            "At least this many GPUs.",
            json!({"type": "integer", "minimum": 1, "maximum": 64}),
        )
        .query(
            "max_price",
            "At most this price, USD per hour.",
            json!({"type": "number", "exclusiveMinimum": 0}),
        )
        .query(
            "region",
            "Only this region or datacenter (a case-insensitive substring).",
            trimmed("[A-Za-z0-9 ,._-]{1,64}"),
        )
        .query(
            "available",
            "`true` (or `1`): only offers that can be rented now; `false` (or `0`): only the others.",
            trimmed("([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)"),
        )
        .query(
            "sort",
            "`price` (cheapest first, the default), `price_per_gpu` or `gpu_memory` (most first).",
            trimmed("(price|price_per_gpu|gpu_memory)"),
        )
        .query(
            "limit",
            "At most this many offers (default 500).",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_OFFERS}),
        )
        .answers_list::<Offer>(200, "The matching offers, sorted.")
        .errors(&[400])
}

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
        V1Ok::ok("Offers retrieved successfully", data(&offers))
    })
    .await
}
