//! A short-lived cache of a provider's offers, so a burst of searches costs one round of
//! provider calls (EC2 needs dozens of pages per search).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::domain::offers::Offer;
use crate::error::Result;

pub struct OfferCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Vec<Offer>)>>,
}

impl OfferCache {
    pub fn new(ttl: Duration) -> Self {
        OfferCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The offers cached under `key`, or fetches them. Concurrent misses wait for one fetch
    /// (the lock is held across it), so a burst does not multiply provider calls.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<Vec<Offer>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Offer>>>,
    {
        let mut entries = self.entries.lock().await;
        if let Some((at, offers)) = entries.get(key) {
            if at.elapsed() < self.ttl {
                return Ok(offers.clone());
            }
        }
        let offers = fetch().await?;
        entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        if !self.ttl.is_zero() {
            entries.insert(key.to_string(), (Instant::now(), offers.clone()));
        }
        Ok(offers)
    }
}
