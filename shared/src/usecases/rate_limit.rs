//! Request rate limits: a fixed one-minute window per client IP and per API key, counted
//! in the store so every Lambda instance (and the local server) shares one count.

use crate::domain::Millis;
use crate::error::Result;
use crate::ports::{Clock, RateLimitStore};
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

/// What rate limiting uses: the hit counters and the time.
#[derive(Clone, Copy)]
pub struct Limiter<'a> {
    pub counters: &'a dyn RateLimitStore,
    pub clock: &'a dyn Clock,
}

impl<'a> From<&'a AppState> for Limiter<'a> {
    fn from(state: &'a AppState) -> Self {
        Limiter {
            counters: &*state.store,
            clock: &*state.clock,
        }
    }
}

/// Counts one request against `bucket` (e.g. `ip:203.0.113.7`, `key:<key id>`).
pub async fn hit(state: Limiter<'_>, bucket: &str, limit: u32) -> Result<RateDecision> {
    let now = state.clock.now_millis();
    let window_start = now - now.rem_euclid(WINDOW_MS);
    let reset = window_start + WINDOW_MS;
    let hits = state
        .counters
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

/// Failed admin logins allowed per client address and minute unless configured
/// (`GPUFLEET_ADMIN_LOGIN_FAILURES_PER_MINUTE`). Counted over a sliding
/// minute (the current window plus the previous one, weighted by how much of it the
/// sliding minute still covers), so a burst across a window boundary is throttled too:
/// ten failures a minute pass, a brute force is stopped within its first 15-odd tries.
pub const DEFAULT_LOGIN_FAILURES_PER_MINUTE: u32 = 15;

fn login_bucket(ip: &str) -> String {
    format!("login:{ip}")
}

/// The sliding-minute estimate, and seconds until it falls below the limit when it is at it.
fn login_standing(now: Millis, previous: u64, current: u64, limit: u32) -> Option<i64> {
    let into = now.rem_euclid(WINDOW_MS);
    let weight = |hits: u64, covered_ms: Millis| hits as f64 * covered_ms as f64 / WINDOW_MS as f64;
    let estimate = weight(previous, WINDOW_MS - into) + current as f64;
    let limit = f64::from(limit);
    if estimate < limit {
        return None;
    }
    // Free again once the current window's failures, sliding out in the next window, weigh
    // less than the limit: `current * (1 - t/WINDOW) < limit`.
    let next_window_in = WINDOW_MS - into;
    let after = if current as f64 >= limit {
        (WINDOW_MS as f64 * (1.0 - limit / current as f64)) as Millis + 1
    } else {
        0
    };
    Some(((next_window_in + after + 999) / 1000).max(1))
}

/// Whether failed logins from `ip` are throttled now (reads only): `Some(retry_after)`.
pub async fn login_throttled(state: Limiter<'_>, ip: &str, limit: u32) -> Result<Option<i64>> {
    let now = state.clock.now_millis();
    let window_start = now - now.rem_euclid(WINDOW_MS);
    let bucket = login_bucket(ip);
    let current = state.counters.hits(&bucket, window_start).await?;
    let previous = state
        .counters
        .hits(&bucket, window_start - WINDOW_MS)
        .await?;
    Ok(login_standing(now, previous, current, limit))
}

/// Counts a failed login from `ip` (one write); `Some(retry_after)` when it reached the limit.
pub async fn login_failed(state: Limiter<'_>, ip: &str, limit: u32) -> Result<Option<i64>> {
    let now = state.clock.now_millis();
    let window_start = now - now.rem_euclid(WINDOW_MS);
    let bucket = login_bucket(ip);
    let current = state
        .counters
        .count_hit(&bucket, window_start, window_start + 3 * WINDOW_MS)
        .await?;
    let previous = state
        .counters
        .hits(&bucket, window_start - WINDOW_MS)
        .await?;
    Ok(login_standing(now, previous, current, limit))
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

    #[test]
    fn login_failures_slide_across_window_boundaries() {
        // Ten a minute, evenly spread, never throttle.
        for into in (0..60_000).step_by(6_000) {
            let so_far = (into / 6_000) as u64;
            assert_eq!(login_standing(60_000 + into, 10, so_far, 15), None);
        }
        // Fifteen in a window: throttled, until they slide out.
        assert!(login_standing(60_000 + 30_000, 0, 15, 15).is_some());
        // A burst of 14 just before a boundary and two just after: throttled by the 16th.
        assert!(login_standing(120_000 + 1_000, 14, 2, 15).is_some());
        // Well after the burst the old window weighs little.
        assert_eq!(login_standing(120_000 + 50_000, 14, 1, 15), None);
        // Retry-After points past the moment the estimate drops under the limit.
        let retry = login_standing(60_000 + 59_000, 0, 30, 15).unwrap();
        let free_at = 60_000 + 59_000 + retry * 1000;
        assert_eq!(login_standing(free_at, 30, 0, 15), None);
        assert!(login_standing(free_at - 2_000, 30, 0, 15).is_some());
    }
}
