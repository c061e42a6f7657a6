//! Assignment notifiers: how a long-polling VM learns that it was just assigned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::ports::{AssignmentNotifier, Wakeup};

/// One process serves both the claim and the waiting VM (local mode): wake it at once.
/// A waiting VM costs one parked task, no thread and no database connection.
#[derive(Default)]
pub struct InProcessNotifier {
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

impl InProcessNotifier {
    fn entry(&self, hostname: &str) -> Arc<Notify> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.entry(hostname.to_string()).or_default().clone()
    }
}

impl AssignmentNotifier for InProcessNotifier {
    fn subscribe(&self, hostname: &str) -> Wakeup {
        let mut wakeup = Box::pin(self.entry(hostname).notified_owned());
        // Enabled now, so a notify_waiters() between this call and the first poll counts.
        wakeup.as_mut().enable();
        wakeup
    }

    fn notify(&self, hostname: &str) {
        let notify = {
            let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.get(hostname).cloned()
        };
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }
}

/// Claims and waits happen in different processes (Lambda): re-check after an interval.
pub struct PollingNotifier {
    pub interval: Duration,
}

impl AssignmentNotifier for PollingNotifier {
    fn subscribe(&self, _hostname: &str) -> Wakeup {
        Box::pin(tokio::time::sleep(self.interval))
    }

    fn notify(&self, _hostname: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_before_the_wait_is_not_lost() {
        let n = InProcessNotifier::default();
        let wakeup = n.subscribe("vm-1");
        n.notify("vm-1");
        tokio::time::timeout(Duration::from_secs(1), wakeup)
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn other_vms_are_not_woken() {
        let n = InProcessNotifier::default();
        let wakeup = n.subscribe("vm-1");
        n.notify("vm-2");
        assert!(tokio::time::timeout(Duration::from_millis(50), wakeup)
            .await
            .is_err());
    }
}
