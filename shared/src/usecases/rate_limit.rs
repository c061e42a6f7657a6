//! Request rate limits: a fixed one-minute window per client IP and per API key, counted
//! in the store so every Lambda instance (and the local server) shares one count.

use crate::domain::Millis;
use crate::error::Result;
use crate::AppState;

pub const WINDOW_MS: Millis = 60_000;

/// Where a client stands after one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub limit: u64,
    pub remaining: u64,
    /// When the window ends, Unix seconds (`X-RateLimit-Reset`).
    pub reset_at: i64,
    /// Seconds until then (`Retry-After` when refused), at least 1.
    pub retry_after: i64,
    pub allowed: bool,
}

impl RateDecision {
    /// The tighter of two limits: refused if either refuses, the fewer remaining.
    pub fn combine(self, other: RateDecision) -> RateDecision {
        let (tight, loose) = if (other.allowed, other.remaining) < (self.allowed, self.remaining) {
            (other, self)
        } else {
            (self, other)
        };
        RateDecision {
            allowed: tight.allowed && loose.allowed,
            ..tight
        }
    }
}

/// Counts one request against `bucket` (e.g. `ip:203.0.113.7`, `key:<key id>`).
pub async fn hit(state: &AppState, bucket: &str, limit: u32) -> Result<RateDecision> {
    let now = state.clock.now_millis();
    let window_start = now - now.rem_euclid(WINDOW_MS);
    let reset = window_start + WINDOW_MS;
    let hits = state
        .store
        .count_hit(bucket, window_start, reset + WINDOW_MS)
        .await?;
    let limit = u64::from(limit);
    Ok(RateDecision {
        limit,
        remaining: limit.saturating_sub(hits),
        reset_at: reset / 1000,
        retry_after: ((reset - now + 999) / 1000).max(1),
        allowed: hits <= limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(allowed: bool, remaining: u64) -> RateDecision {
        RateDecision {
            limit: 100,
            remaining,
            reset_at: 60,
            retry_after: 1,
            allowed,
        }
    }

    #[test]
    fn the_tighter_limit_wins() {
        assert_eq!(d(true, 5).combine(d(true, 50)).remaining, 5);
        assert_eq!(d(true, 50).combine(d(true, 5)).remaining, 5);
        assert!(!d(true, 50).combine(d(false, 0)).allowed);
        assert!(!d(false, 0).combine(d(true, 50)).allowed);
    }
}
