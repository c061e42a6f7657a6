//! The command log: every cloud command gpufleet runs (launch, terminate, start, stop, ...),
//! who caused it, how it went and how long it took. Append-only: clearing hides older
//! entries from the default view but keeps them.

use serde::{Deserialize, Serialize};

use super::vm::Millis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEntry {
    /// `<at, 20 digits>-<16 hex>`: sorts by time, unique.
    pub id: String,
    pub at: Millis,
    /// The command as its CLI equivalent, e.g. `aws ec2 terminate-instances --instance-ids i-0abc`.
    pub command: String,
    /// `success` or `error`.
    pub status: String,
    /// What went wrong (never credentials), or a short result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub execution_ms: u64,
    /// The authenticated caller (`admin:<name>`, `user:<id>`) or `system`.
    pub user: String,
}

impl CommandEntry {
    pub fn new(
        at: Millis,
        command: String,
        ok: bool,
        detail: Option<String>,
        execution_ms: u64,
        user: String,
    ) -> Self {
        CommandEntry {
            id: format!(
                "{:020}-{}",
                at.max(0),
                hex::encode(rand::random::<[u8; 8]>())
            ),
            at,
            command,
            status: if ok { "success" } else { "error" }.into(),
            detail,
            execution_ms,
            user,
        }
    }
}

tokio::task_local! {
    /// Who the current request acts for; commands run outside a request are `system`'s.
    static CALLER: String;
}

/// Runs `f` with `user` as the caller its cloud commands are logged under.
pub async fn as_caller<F: std::future::Future>(user: String, f: F) -> F::Output {
    CALLER.scope(user, f).await
}

/// The current caller, or `system`.
pub fn current_caller() -> String {
    CALLER
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "system".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_caller_is_scoped_to_the_request() {
        assert_eq!(current_caller(), "system");
        let inside = as_caller("user:ann".into(), async { current_caller() }).await;
        assert_eq!(inside, "user:ann");
        assert_eq!(current_caller(), "system");
    }

    #[test]
    fn ids_sort_by_time() {
        let a = CommandEntry::new(5, "a".into(), true, None, 1, "system".into());
        let b = CommandEntry::new(40, "b".into(), false, None, 1, "system".into());
        assert!(a.id < b.id);
        assert_eq!(b.status, "error");
    }
}
