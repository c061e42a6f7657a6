//! The vast_ai provider: a client for Vast.ai's REST API (`/api/v0`): offer search
//! (`POST /bundles/`), create from an offer (`PUT /asks/{id}/`), show/list
//! (`GET /instances/…`), start/stop (`PUT /instances/{id}/` with a state), destroy
//! (`DELETE /instances/{id}/`), SSH keys (`POST /instances/{id}/ssh/`).
//!
//! Our machines carry the label `gpufleet:<deployment>:<record id>`: that finds them for
//! reconcile and makes create idempotent (a retry finds the machine instead of renting a
//! second one). The user's label lives in our record.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::offer_cache::OfferCache;
use crate::domain::instances::{InstanceStatus, ProviderInstance};
use crate::domain::offers::{Offer, OfferQuery};
use crate::error::{Error, Result};
use crate::ports::{CreateInstanceSpec, GpuCloud, LaunchError};

pub const PROVIDER: &str = "vast_ai";
/// Offers per search page; the client pages by id until a page comes back short.
const PAGE: usize = 256;
/// Pages one search reads at most.
const MAX_PAGES: usize = 8;

pub struct VastCloud {
    http: reqwest::Client,
    base: String,
    api_key: String,
    label_prefix: String,
    cache: OfferCache,
}

/// How a failed Vast call ended.
enum VastError {
    NotFound,
    Throttled(String),
    /// The offer was taken meanwhile.
    Gone(String),
    Refused(String),
    Other(String),
}

impl From<VastError> for Error {
    fn from(e: VastError) -> Self {
        match e {
            VastError::NotFound => Error::NotFound("Vast.ai resource".into()),
            VastError::Throttled(m)
            | VastError::Gone(m)
            | VastError::Refused(m)
            | VastError::Other(m) => Error::Internal(anyhow::anyhow!("Vast.ai: {m}")),
        }
    }
}

fn f64_of(v: &Value, name: &str) -> f64 {
    v.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

fn status_of(raw: Option<&str>) -> Option<InstanceStatus> {
    match raw? {
        "running" => Some(InstanceStatus::Running),
        "loading" | "created" | "scheduling" => Some(InstanceStatus::Loading),
        "exited" | "stopped" | "inactive" => Some(InstanceStatus::Stopped),
        "offline" | "unknown" => None,
        _ => None,
    }
}

impl VastCloud {
    pub fn new(base: &str, api_key: &str, deployment: &str, cache_ttl: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| Error::Internal(anyhow::anyhow!("HTTP client: {e}")))?;
        Ok(VastCloud {
            http,
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            label_prefix: format!("gpufleet:{deployment}:"),
            cache: OfferCache::new(cache_ttl),
        })
    }

    /// One call; the body of a 2xx, else the error classified by status (and Vast's
    /// `error` code, never its message).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, VastError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.api_key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request
            .send()
            .await
            .map_err(|e| VastError::Other(format!("{path}: {e}")))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() && value.get("success") != Some(&Value::Bool(false)) {
            return Ok(value);
        }
        let code = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let msg = value
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let what = format!("{path}: HTTP {} {code} {msg}", status.as_u16());
        Err(match status.as_u16() {
            _ if code == "no_such_ask" => VastError::Gone(what),
            410 => VastError::Gone(what),
            404 => VastError::NotFound,
            429 => VastError::Throttled(what),
            400 | 422 => VastError::Refused(what),
            _ => VastError::Other(what),
        })
    }

    fn offer_of(&self, v: &Value) -> Option<Offer> {
        let id = v.get("id")?.as_i64()?;
        let gpus = v.get("num_gpus").and_then(Value::as_u64).unwrap_or(0) as u32;
        let machine_id = v.get("machine_id").cloned().unwrap_or(Value::Null);
        Some(Offer {
            id: format!("{PROVIDER}:{id}"),
            provider: PROVIDER.into(),
            provider_id: id.to_string(),
            name: format!(
                "Vast.ai Machine {}",
                machine_id
                    .as_i64()
                    .map(|m| m.to_string())
                    .unwrap_or_default()
            ),
            status: if v.get("rentable").and_then(Value::as_bool).unwrap_or(false)
                && !v.get("rented").and_then(Value::as_bool).unwrap_or(false)
            {
                "available".into()
            } else {
                "unavailable".into()
            },
            gpu_model: v
                .get("gpu_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            gpu_count: gpus,
            gpu_memory_gb: f64_of(v, "gpu_ram") * f64::from(gpus) / 1024.0,
            cpu_count: f64_of(v, "cpu_cores_effective").floor() as u32,
            ram_gb: (f64_of(v, "cpu_ram") / 1024.0).round(),
            storage_gb: f64_of(v, "disk_space").round(),
            price_per_hour: f64_of(v, "dph_total"),
            region: v
                .get("geolocation")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            provider_data: json!({
                "machine_id": machine_id,
                "compute_cap": v.get("compute_cap"),
                "reliability": v.get("reliability2").or(v.get("reliability")),
                "score": v.get("score"),
            }),
        })
    }

    /// Vast's query for the filters it can apply server side (the rest are applied by
    /// `OfferQuery::apply`).
    fn vast_query(query: &OfferQuery) -> Value {
        let mut q = json!({"order": [["id", "asc"]], "type": "on-demand", "limit": PAGE});
        if query.available != Some(false) {
            q["rentable"] = json!({"eq": true});
        }
        if let Some(n) = query.min_gpu_count {
            q["num_gpus"] = json!({"gte": n});
        }
        if let Some(p) = query.max_price {
            q["dph_total"] = json!({"lte": p});
        }
        q
    }

    async fn fetch_offers(&self, base_query: Value) -> Result<Vec<Offer>> {
        let mut offers = Vec::new();
        let mut after: Option<i64> = None;
        for _ in 0..MAX_PAGES {
            let mut q = base_query.clone();
            if let Some(last) = after {
                q["id"] = json!({"gt": last});
            }
            let page = self
                .call(reqwest::Method::POST, "/bundles/", Some(q))
                .await
                .map_err(Error::from)?;
            let items = page
                .get("offers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            offers.extend(items.iter().filter_map(|v| self.offer_of(v)));
            after = items.iter().filter_map(|v| v.get("id")?.as_i64()).max();
            if items.len() < PAGE || after.is_none() {
                break;
            }
        }
        Ok(offers)
    }

    fn instance_of(&self, v: &Value) -> Option<ProviderInstance> {
        let id = v.get("id")?.as_i64()?;
        let label = v.get("label").and_then(Value::as_str).unwrap_or("");
        Some(ProviderInstance {
            provider_id: id.to_string(),
            record_id: label.strip_prefix(&self.label_prefix).map(str::to_string),
            status: status_of(v.get("actual_status").and_then(Value::as_str)),
            launched_at: v
                .get("start_date")
                .and_then(Value::as_f64)
                .map_or(0, |s| (s * 1000.0) as i64),
            public_ip: v
                .get("public_ipaddr")
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string()),
            ssh_host: v
                .get("ssh_host")
                .and_then(Value::as_str)
                .map(str::to_string),
            ssh_port: v
                .get("ssh_port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
        })
    }

    async fn all_instances(&self) -> Result<Vec<ProviderInstance>> {
        let v = self
            .call(reqwest::Method::GET, "/instances/?owner=me", None)
            .await
            .map_err(Error::from)?;
        Ok(v.get("instances")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|i| self.instance_of(i)).collect())
            .unwrap_or_default())
    }

    /// Only numeric ids reach a URL path.
    fn checked_id(provider_id: &str) -> Result<&str> {
        if !provider_id.is_empty()
            && provider_id.len() <= 20
            && provider_id.chars().all(|c| c.is_ascii_digit())
        {
            Ok(provider_id)
        } else {
            Err(Error::NotFound(format!("Vast.ai instance {provider_id}")))
        }
    }

    /// Ours: a machine carrying this deployment's label.
    async fn ours(&self, provider_id: &str) -> Result<Option<ProviderInstance>> {
        let id = Self::checked_id(provider_id)?;
        match self
            .call(reqwest::Method::GET, &format!("/instances/{id}/"), None)
            .await
        {
            Ok(v) => Ok(v
                .get("instances")
                .and_then(|i| self.instance_of(i))
                .filter(|i| i.record_id.is_some())),
            Err(VastError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_state(&self, provider_id: &str, state: &str) -> Result<()> {
        if self.ours(provider_id).await?.is_none() {
            return Err(Error::NotFound(format!("Vast.ai instance {provider_id}")));
        }
        self.call(
            reqwest::Method::PUT,
            &format!("/instances/{provider_id}/"),
            Some(json!({"state": state})),
        )
        .await
        .map_err(Error::from)?;
        Ok(())
    }
}

#[async_trait]
impl GpuCloud for VastCloud {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn requires_image(&self) -> bool {
        true
    }

    async fn search_offers(&self, query: &OfferQuery) -> Result<Vec<Offer>> {
        let q = Self::vast_query(query);
        let key = q.to_string();
        self.cache.get_or_fetch(&key, || self.fetch_offers(q)).await
    }

    async fn offer(&self, provider_id: &str) -> Result<Option<Offer>> {
        let Ok(id) = provider_id.parse::<i64>() else {
            return Ok(None);
        };
        let v = self
            .call(
                reqwest::Method::POST,
                "/bundles/",
                Some(json!({"id": {"eq": id}, "limit": 1})),
            )
            .await
            .map_err(Error::from)?;
        Ok(v.get("offers")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|o| self.offer_of(o)))
    }

    async fn create(&self, spec: &CreateInstanceSpec) -> Result<ProviderInstance, LaunchError> {
        let label = format!("{}{}", self.label_prefix, spec.record_id);
        // A retry: the machine an earlier attempt rented carries the label.
        if let Some(existing) = self
            .all_instances()
            .await?
            .into_iter()
            .find(|i| i.record_id.as_deref() == Some(spec.record_id.as_str()))
        {
            return Ok(existing);
        }
        let image = spec
            .request
            .image
            .clone()
            .ok_or_else(|| LaunchError::Rejected("vast_ai instances need an image".into()))?;
        let id = Self::checked_id(&spec.offer_id).map_err(LaunchError::Other)?;
        let mut body = json!({
            "client_id": "me",
            "image": image,
            "label": label,
            "disk": spec.offer.storage_gb.clamp(10.0, 2048.0),
            "runtype": "ssh",
        });
        if let Some(script) = &spec.request.onstart_script {
            // A JSON string field: Vast runs it as the container's onstart file.
            body["onstart"] = json!(script);
        }
        let created = match self
            .call(reqwest::Method::PUT, &format!("/asks/{id}/"), Some(body))
            .await
        {
            Ok(v) => v,
            Err(VastError::Throttled(m)) => return Err(LaunchError::Throttled(m)),
            Err(VastError::Gone(m)) => return Err(LaunchError::Capacity(m)),
            Err(VastError::Refused(m)) => return Err(LaunchError::Rejected(m)),
            Err(VastError::NotFound) => {
                return Err(LaunchError::Capacity(format!("offer {id} is gone")))
            }
            Err(VastError::Other(m)) => {
                return Err(LaunchError::Other(Error::Internal(anyhow::anyhow!(
                    "Vast.ai: {m}"
                ))))
            }
        };
        let contract = created
            .get("new_contract")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                LaunchError::Other(Error::Internal(anyhow::anyhow!(
                    "Vast.ai create returned no new_contract"
                )))
            })?;
        if let Some(key) = &spec.request.ssh_key {
            self.call(
                reqwest::Method::POST,
                &format!("/instances/{contract}/ssh/"),
                Some(json!({"ssh_key": key})),
            )
            .await
            .map_err(|e| LaunchError::Other(e.into()))?;
        }
        Ok(ProviderInstance {
            provider_id: contract.to_string(),
            record_id: Some(spec.record_id.clone()),
            status: Some(InstanceStatus::Loading),
            ..ProviderInstance::default()
        })
    }

    async fn show(&self, provider_id: &str) -> Result<Option<ProviderInstance>> {
        self.ours(provider_id).await
    }

    async fn start(&self, provider_id: &str) -> Result<()> {
        self.set_state(provider_id, "running").await
    }

    async fn stop(&self, provider_id: &str) -> Result<()> {
        self.set_state(provider_id, "stopped").await
    }

    async fn destroy(&self, provider_id: &str) -> Result<bool> {
        if self.ours(provider_id).await?.is_none() {
            return Ok(true);
        }
        match self
            .call(
                reqwest::Method::DELETE,
                &format!("/instances/{provider_id}/"),
                None,
            )
            .await
        {
            Ok(_) | Err(VastError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        // Verified: destroyed only when Vast no longer shows it.
        Ok(self.ours(provider_id).await?.is_none())
    }

    async fn list_owned(&self) -> Result<Vec<ProviderInstance>> {
        Ok(self
            .all_instances()
            .await?
            .into_iter()
            .filter(|i| i.record_id.is_some())
            .collect())
    }
}
