//! Test-only crate: the integration tests live in `tests/api/` (one binary), and
//! `src/bin/agent.rs` provides the agent executable those tests start.
