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
