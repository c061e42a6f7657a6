//! The real clock.

use crate::domain::Millis;
use crate::ports::Clock;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The real clock, shifted by an adjustable offset: lets a test (or a demo) jump ahead an
/// hour to watch a lease expire while everything else runs for real.
#[derive(Default)]
pub struct OffsetClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_millis(&self) -> Millis {
        SystemClock
            .now_millis()
            .saturating_add(self.offset_ms.load(std::sync::atomic::Ordering::SeqCst))
    }
}
