//! GPU offers from the cloud providers: what a search may ask for and what an offer says.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One way to get GPUs: an instance type in a region and market (aws_ec2), a machine's ask
/// (vast_ai), this machine (local).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Offer {
    /// `<provider>:<provider_id>`, stable across searches.
    pub id: String,
    pub provider: String,
    /// What the provider calls it; `POST /api/v1/instances` takes this (or `id`) as `offer_id`.
    pub provider_id: String,
    pub name: String,
    /// `available` or `unavailable` (listed, but cannot be rented right now).
    pub status: String,
    pub gpu_model: String,
    pub gpu_count: u32,
    /// Total GPU memory, GiB (0 when the provider does not say).
    pub gpu_memory_gb: f64,
    pub cpu_count: u32,
    pub ram_gb: f64,
    pub storage_gb: f64,
    /// USD per hour.
    pub price_per_hour: f64,
    pub region: String,
    #[schema(value_type = Object)]
    pub provider_data: serde_json::Value,
}

impl Offer {
    pub fn is_available(&self) -> bool {
        self.status == "available"
    }
}

/// The order of search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfferSort {
    /// Cheapest first (the default).
    #[default]
    Price,
    /// Cheapest per GPU first.
    PricePerGpu,
    /// Most GPU memory first.
    GpuMemory,
}

/// A validated `GET /api/v1/offers/search`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfferQuery {
    pub provider: Option<String>,
    /// Normalised (see [`normalize_gpu_model`]).
    pub gpu_model: Option<String>,
    pub min_gpu_count: Option<u32>,
    pub max_price: Option<f64>,
    pub region: Option<String>,
    pub available: Option<bool>,
    pub sort: OfferSort,
    pub limit: usize,
}

/// Most offers one search returns.
pub const MAX_OFFERS: usize = 500;

/// "RTX 4090", "rtx_4090", "RTX-4090" and "rtx4090" are one model: lowercase, without
/// spaces, `_` and `-`.
pub fn normalize_gpu_model(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn bad(name: &str, rule: &str) -> Error {
    Error::validation(format!("{name}: {rule}"))
}

impl OfferQuery {
    /// Parses query-string pairs; unknown parameters are refused so a typo is not silently
    /// ignored.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self> {
        let mut q = OfferQuery {
            limit: MAX_OFFERS,
            ..OfferQuery::default()
        };
        for (name, value) in pairs {
            let value = value.trim();
            match name.as_str() {
                "provider" => {
                    if value.is_empty()
                        || value.len() > 32
                        || !value
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        return Err(bad("provider", "must be a provider name such as aws_ec2"));
                    }
                    q.provider = Some(value.to_string());
                }
                "gpu_model" => {
                    let model = normalize_gpu_model(value);
                    if model.is_empty()
                        || model.len() > 64
                        || !model.chars().all(|c| c.is_alphanumeric() || c == '.')
                    {
                        return Err(bad(
                            "gpu_model",
                            "must be a GPU model such as \"RTX 4090\" or A10G",
                        ));
                    }
                    q.gpu_model = Some(model);
                }
                "min_gpu_count" => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| bad("min_gpu_count", "must be a whole number"))?;
                    if !(1..=64).contains(&n) {
                        return Err(bad("min_gpu_count", "must be between 1 and 64"));
                    }
                    q.min_gpu_count = Some(n);
                }
                "max_price" => {
                    let p: f64 = value
                        .parse()
                        .map_err(|_| bad("max_price", "must be a number (USD per hour)"))?;
                    if !p.is_finite() || p <= 0.0 {
                        return Err(bad("max_price", "must be greater than 0"));
                    }
                    q.max_price = Some(p);
                }
                "region" => {
                    if value.is_empty()
                        || value.len() > 64
                        || !value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || " -_,.".contains(c))
                    {
                        return Err(bad("region", "must be a region or datacenter name"));
                    }
                    q.region = Some(value.to_string());
                }
                "available" => {
                    q.available = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("available", "must be true or false")),
                    })
                }
                "sort" => {
                    q.sort = match value {
                        "price" => OfferSort::Price,
                        "price_per_gpu" => OfferSort::PricePerGpu,
                        "gpu_memory" => OfferSort::GpuMemory,
                        _ => {
                            return Err(bad(
                                "sort",
                                "must be price, price_per_gpu or gpu_memory",
                            ))
                        }
                    }
                }
                "limit" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| bad("limit", "must be a whole number"))?;
                    if !(1..=MAX_OFFERS).contains(&n) {
                        return Err(bad("limit", &format!("must be between 1 and {MAX_OFFERS}")));
                    }
                    q.limit = n;
                }
                other => {
                    return Err(Error::validation(format!(
                        "unknown parameter {other:?}; use provider, gpu_model, min_gpu_count, max_price, region, available, sort, limit"
                    )))
                }
            }
        }
        Ok(q)
    }

    /// Whether `offer` passes every filter (providers may pre-filter; this is the rule).
    pub fn matches(&self, offer: &Offer) -> bool {
        self.provider.as_deref().is_none_or(|p| p == offer.provider)
            && self
                .gpu_model
                .as_deref()
                .is_none_or(|m| normalize_gpu_model(&offer.gpu_model) == m)
            && self.min_gpu_count.is_none_or(|n| offer.gpu_count >= n)
            && self.max_price.is_none_or(|p| offer.price_per_hour <= p)
            && self.region.as_deref().is_none_or(|r| {
                offer.region.eq_ignore_ascii_case(r)
                    || offer
                        .region
                        .to_ascii_lowercase()
                        .contains(&r.to_ascii_lowercase())
            })
            && self.available.is_none_or(|a| offer.is_available() == a)
    }

    /// Filters, sorts (ties by id, so pages are stable) and truncates.
    pub fn apply(&self, offers: Vec<Offer>) -> Vec<Offer> {
        let mut out: Vec<Offer> = offers.into_iter().filter(|o| self.matches(o)).collect();
        let per_gpu = |o: &Offer| o.price_per_hour / f64::from(o.gpu_count.max(1));
        out.sort_by(|a, b| {
            let primary = match self.sort {
                OfferSort::Price => a.price_per_hour.total_cmp(&b.price_per_hour),
                OfferSort::PricePerGpu => per_gpu(a).total_cmp(&per_gpu(b)),
                OfferSort::GpuMemory => b.gpu_memory_gb.total_cmp(&a.gpu_memory_gb),
            };
            primary.then_with(|| a.id.cmp(&b.id))
        });
        out.truncate(self.limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn offer(id: &str, model: &str, gpus: u32, price: f64, mem: f64) -> Offer {
        Offer {
            id: format!("p:{id}"),
            provider: "p".into(),
            provider_id: id.into(),
            name: id.into(),
            status: "available".into(),
            gpu_model: model.into(),
            gpu_count: gpus,
            gpu_memory_gb: mem,
            cpu_count: 8,
            ram_gb: 32.0,
            storage_gb: 100.0,
            price_per_hour: price,
            region: "us-east-1".into(),
            provider_data: serde_json::Value::Null,
        }
    }

    #[test]
    fn gpu_models_normalise() {
        for raw in ["RTX 4090", "rtx_4090", "RTX-4090", " rtx4090 "] {
            assert_eq!(normalize_gpu_model(raw), "rtx4090");
        }
        assert_eq!(normalize_gpu_model("A10G"), "a10g");
    }

    #[test]
    fn parsing_accepts_the_documented_parameters_and_refuses_the_rest() {
        let q = OfferQuery::parse(&pairs(&[
            ("provider", "vast_ai"),
            ("gpu_model", "RTX 4090"),
            ("min_gpu_count", "2"),
            ("max_price", "2.0"),
            ("region", "US-East"),
            ("available", "true"),
            ("sort", "price_per_gpu"),
        ]))
        .unwrap();
        assert_eq!(q.gpu_model.as_deref(), Some("rtx4090"));
        assert_eq!(q.min_gpu_count, Some(2));
        assert_eq!(q.available, Some(true));
        for bad in [
            ("min_gpu_count", "two"),
            ("min_gpu_count", "0"),
            ("max_price", "-1"),
            ("max_price", "NaN"),
            ("available", "yes"),
            ("provider", "AWS EC2"),
            ("gpu_model", "$(id)"),
            ("sort", "name"),
            ("limit", "0"),
            ("colour", "red"),
        ] {
            let err = OfferQuery::parse(&pairs(&[bad])).unwrap_err();
            assert!(err.to_string().contains(bad.0), "{bad:?}: {err}");
        }
    }

    #[test]
    fn filters_and_sorts() {
        let offers = vec![
            offer("a", "A10G", 1, 1.0, 24.0),
            offer("b", "A10G", 4, 5.0, 96.0),
            offer("c", "RTX 4090", 2, 0.8, 48.0),
            offer("d", "A10G", 8, 4.0, 192.0),
        ];
        let q = |p: &[(&str, &str)]| OfferQuery::parse(&pairs(p)).unwrap();
        let ids = |v: Vec<Offer>| v.into_iter().map(|o| o.provider_id).collect::<Vec<_>>();
        assert_eq!(ids(q(&[]).apply(offers.clone())), ["c", "a", "d", "b"]);
        assert_eq!(
            ids(q(&[("gpu_model", "a10g"), ("min_gpu_count", "2")]).apply(offers.clone())),
            ["d", "b"]
        );
        assert_eq!(
            ids(q(&[("max_price", "1.0")]).apply(offers.clone())),
            ["c", "a"]
        );
        assert_eq!(
            ids(q(&[("sort", "price_per_gpu")]).apply(offers.clone())),
            ["c", "d", "a", "b"]
        );
        assert_eq!(
            ids(q(&[("sort", "gpu_memory"), ("limit", "2")]).apply(offers)),
            ["d", "b"]
        );
    }
}
