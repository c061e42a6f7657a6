//! VM log lines: cleaned on the way in (ANSI escapes and control characters removed,
//! multi-line messages split, very long lines cut), kept per VM up to a byte cap with the
//! oldest lines dropped whole.

/// Longest line we keep; longer ones are cut and marked.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Largest chunk one store record holds (DynamoDB items must stay far below 400 KB).
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;
/// Smallest per-VM cap that makes sense (a few maximal lines).
pub const MIN_CAP_BYTES: usize = 4 * MAX_LINE_BYTES;

/// Turns pushed messages into clean lines: one message may hold several lines, and a
/// final newline does not make an extra empty line.
pub fn clean_lines<S: AsRef<str>>(messages: &[S]) -> Vec<String> {
    let mut lines = Vec::new();
    for message in messages {
        let text = strip_ansi(message.as_ref());
        let text = text.strip_suffix('\n').unwrap_or(&text);
        for line in text.split('\n') {
            let line: String = line
                .trim_end_matches('\r')
                .chars()
                .filter(|c| *c == '\t' || !c.is_control())
                .collect();
            lines.push(cut(line));
        }
    }
    lines
}

fn cut(mut line: String) -> String {
    if line.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES - 16;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str(" …[line cut]");
    }
    line
}

/// Removes ANSI escape sequences: CSI (`ESC [ … final`), OSC and other strings
/// (`ESC ] … BEL` or `… ESC \`), nF escapes (`ESC ( B`) and two-byte escapes (`ESC x`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' && c != '\u{9b}' {
            out.push(c);
            continue;
        }
        let kind = if c == '\u{9b}' {
            Some('[')
        } else {
            chars.next()
        };
        match kind {
            Some('[') => {
                // Parameters and intermediates, then one final byte in @..~.
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            }
            Some(']') | Some('P') | Some('_') | Some('^') => {
                // String until BEL or ST (ESC \).
                while let Some(n) = chars.next() {
                    if n == '\u{7}' {
                        break;
                    }
                    if n == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            Some(' '..='/') => {
                // nF escapes (e.g. `ESC ( B`): intermediates, then one final byte.
                while chars.next_if(|n| (' '..='/').contains(n)).is_some() {}
                chars.next();
            }
            _ => {} // ESC x: both dropped
        }
    }
    out
}

/// Bytes a line takes in the store (with its newline).
pub fn line_bytes(line: &str) -> usize {
    line.len() + 1
}

/// Splits lines into chunks of at most `MAX_CHUNK_BYTES`, never splitting a line.
pub fn chunk_lines(lines: &[String]) -> Vec<Vec<String>> {
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for line in lines {
        let n = line_bytes(line);
        if chunks.is_empty() || size + n > MAX_CHUNK_BYTES {
            chunks.push(Vec::new());
            size = 0;
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(line.clone());
        }
        size += n;
    }
    chunks
}

/// A chunk's body as stored: its lines, each ending in a newline.
pub fn chunk_body(lines: &[String]) -> String {
    let mut body = String::with_capacity(lines.iter().map(|l| line_bytes(l)).sum());
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    body
}

/// The lines of stored chunk bodies, in order (a chunk trimmed to nothing has none).
pub fn body_lines<S: AsRef<str>>(bodies: &[S]) -> Vec<String> {
    bodies
        .iter()
        .map(AsRef::as_ref)
        .filter(|b| !b.is_empty())
        .flat_map(|b| b.strip_suffix('\n').unwrap_or(b).split('\n'))
        .map(str::to_string)
        .collect()
}

/// One step of trimming a VM's log down to its cap, taken on its oldest chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trim<'a> {
    /// Delete the chunk whole.
    Drop { removed: i64 },
    /// Keep only this tail of the chunk: whole lines, the oldest dropped.
    KeepTail { tail: &'a str, removed: i64 },
}

/// The trimming policy of every store: while a log of `total` bytes is over `cap`, drop its
/// oldest chunk whole if that still leaves at least the cap, else drop just enough of that
/// chunk's first lines. `None` when the log is within its cap. Lines are never cut.
pub fn trim_oldest(total: i64, cap: i64, oldest: &str) -> Option<Trim<'_>> {
    if total <= cap {
        return None;
    }
    let size = oldest.len() as i64;
    if total - size >= cap {
        return Some(Trim::Drop { removed: size });
    }
    let mut tail = oldest;
    let mut remaining = total;
    while remaining > cap {
        let Some((dropped, rest)) = tail.split_once('\n') else {
            break;
        };
        remaining -= (dropped.len() + 1) as i64;
        tail = rest;
    }
    Some(Trim::KeepTail {
        tail,
        removed: size - tail.len() as i64,
    })
}

impl Trim<'_> {
    /// Bytes this step takes off the log's total.
    pub fn removed(&self) -> i64 {
        match self {
            Trim::Drop { removed } | Trim::KeepTail { removed, .. } => *removed,
        }
    }
}

/// Whether a line looks like an error (the log viewer's errors-only filter uses the same
/// words, in its script).
pub fn is_error_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["error", "fail", "fatal", "panic", "traceback", "exception"]
        .iter()
        .any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ansi_and_controls() {
        let lines = clean_lines(&["\u{1b}[1;31mred\u{1b}[0m plain \u{1b}]0;title\u{7}x\u{1b}(B"]);
        assert_eq!(lines, vec!["red plain x"]);
        assert_eq!(clean_lines(&["a\tb\u{0}c"]), vec!["a\tbc"]);
    }

    #[test]
    fn splits_messages_into_lines() {
        assert_eq!(clean_lines(&["one\ntwo\r\n"]), vec!["one", "two"]);
        assert_eq!(clean_lines(&["one", "", "two"]), vec!["one", "", "two"]);
    }

    #[test]
    fn cuts_very_long_lines() {
        let lines = clean_lines(&["é".repeat(MAX_LINE_BYTES)]);
        assert!(lines[0].len() <= MAX_LINE_BYTES);
        assert!(lines[0].ends_with("[line cut]"));
    }

    #[test]
    fn chunks_never_split_lines() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("{i:04}{}", "x".repeat(2000)))
            .collect();
        let chunks = chunk_lines(&lines);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.concat(), lines);
        for c in &chunks {
            assert!(c.iter().map(|l| line_bytes(l)).sum::<usize>() <= MAX_CHUNK_BYTES);
        }
    }

    #[test]
    fn trimming_drops_whole_chunks_then_whole_lines() {
        let oldest = chunk_body(&["aaaa".into(), "bb".into(), "c".into()]); // 5 + 3 + 2 bytes
        assert_eq!(trim_oldest(100, 100, &oldest), None);
        // Dropping the chunk (10) still leaves 100: drop it.
        assert_eq!(
            trim_oldest(110, 100, &oldest),
            Some(Trim::Drop { removed: 10 })
        );
        // 4 over: the first line (5 bytes) goes, and no more.
        let step = trim_oldest(104, 100, &oldest).unwrap();
        assert_eq!(
            step,
            Trim::KeepTail {
                tail: "bb\nc\n",
                removed: 5
            }
        );
        // 6 over: two lines (8 bytes).
        assert_eq!(trim_oldest(106, 100, &oldest).unwrap().removed(), 8);
        assert_eq!(
            body_lines(&[oldest.as_str(), "", "d\n"]),
            vec!["aaaa", "bb", "c", "d"]
        );
    }
}
