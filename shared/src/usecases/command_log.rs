//! Reading and clearing the command log. Clearing is itself logged and only hides older
//! entries from the default view: nothing is ever deleted.

use crate::domain::command_log::{current_caller, CommandEntry};
use crate::domain::Millis;
use crate::error::{Error, Result};
use crate::ports::{Clock, CommandLogStore};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 500;

/// One page, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub entries: Vec<CommandEntry>,
    /// Pass back as `cursor` for the next (older) page.
    pub next_cursor: Option<String>,
    pub cleared_at: Option<Millis>,
}

/// `<20 digits>-<16 hex digits>`, checked byte by byte (no slicing of user input).
pub(crate) fn valid_cursor(c: &str) -> bool {
    let bytes = c.as_bytes();
    bytes.len() == 37
        && bytes.iter().enumerate().all(|(i, b)| match i {
            0..=19 => b.is_ascii_digit(),
            20 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Which page of the log to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: usize,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Also what a clear hid.
    pub include_cleared: bool,
}

impl PageQuery {
    /// From the query string's `limit`, `cursor` and `include_cleared`; every message names
    /// the parameter and its rule.
    pub fn parse(
        limit: Option<&str>,
        cursor: Option<&str>,
        include_cleared: Option<&str>,
    ) -> Result<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(Error::validation(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}"
                    )))
                }
            },
        };
        if let Some(c) = cursor {
            if !valid_cursor(c) {
                return Err(Error::validation("cursor is not one this API returned"));
            }
        }
        let include_cleared = match include_cleared {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(Error::validation("include_cleared must be true or false")),
        };
        Ok(PageQuery {
            limit,
            cursor: cursor.map(str::to_string),
            include_cleared,
        })
    }
}

pub async fn list(log: &dyn CommandLogStore, query: &PageQuery) -> Result<Page> {
    let limit = query.limit;
    let cleared_at = log.last_clear().await?;
    let since = if query.include_cleared {
        None
    } else {
        cleared_at
    };
    let entries = log
        .list_commands(limit + 1, query.cursor.as_deref(), since)
        .await?;
    let more = entries.len() > limit;
    let entries: Vec<CommandEntry> = entries.into_iter().take(limit).collect();
    Ok(Page {
        next_cursor: if more {
            entries.last().map(|e| e.id.clone())
        } else {
            None
        },
        entries,
        cleared_at,
    })
}

/// Hides every entry logged so far from the default view (they stay, and
/// `include_cleared=true` shows them); the clear is logged under the caller.
pub async fn clear(log: &dyn CommandLogStore, clock: &dyn Clock) -> Result<Millis> {
    let at = clock.now_millis();
    log.record_clear(at).await?;
    log.append_command(&CommandEntry::new(
        at,
        "clear-log".into(),
        true,
        Some("older entries hidden from the default view, kept".into()),
        0,
        current_caller(),
    ))
    .await?;
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_checked() {
        assert!(valid_cursor("00000001795327200000-0123456789abcdef"));
        assert!(!valid_cursor("00000001795327200000-0123456789abcdeg"));
        assert!(!valid_cursor("x"));
        assert!(!valid_cursor("' OR 1=1 --"));
        // A multi-byte character across the 20th byte once panicked.
        assert!(!valid_cursor("1234567890123456789\u{e9}aaaaaaaaaaaaaaaa"));
        assert!(!valid_cursor("12345678901234567890-0123456789abcd\u{e9}"));
    }
}
