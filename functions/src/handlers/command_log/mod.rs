//! The command log: every mutating provider command with its caller; read and clear.

pub mod clear_log;
pub mod read_log;
