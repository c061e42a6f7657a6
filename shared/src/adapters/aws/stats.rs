//! Requests (and DynamoDB's consumed capacity) per AWS operation, counted by the AWS
//! adapters for the cost measurements and the benchmarks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests and consumed capacity, per operation kind (for the cost measurements).
#[derive(Default, Debug)]
pub struct RequestStats {
    counts: std::sync::Mutex<HashMap<&'static str, (u64, f64)>>,
    total: AtomicU64,
}

impl RequestStats {
    pub(crate) fn record(&self, op: &'static str, capacity: f64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(op).or_default();
        entry.0 += 1;
        entry.1 += capacity;
    }

    /// Total requests so far.
    pub fn requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// (requests, consumed capacity units) per DynamoDB operation.
    pub fn snapshot(&self) -> HashMap<&'static str, (u64, f64)> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn capacity(&self) -> f64 {
        self.snapshot().values().map(|(_, c)| c).sum()
    }
}
