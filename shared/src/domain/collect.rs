//! Participants' work collected from their VMs: which files count (patterns over the
//! working directory), what a stored name may be (a relative path that can never leave the
//! VM's own folder), and the size caps. Pure rules; the agent, the API and the object store
//! apply them.

use serde::{Deserialize, Serialize};

use super::vm::Millis;
use crate::error::{Error, Result};

/// Most patterns `GPUFLEET_COLLECT_PATTERNS` may list.
pub const MAX_PATTERNS: usize = 32;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 128;
/// Longest collected path, in bytes (S3 keys allow 1,024 with the VM's prefix).
pub const MAX_PATH_BYTES: usize = 768;
/// Longest path component, in bytes (what common file systems allow).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Deepest collected path, in components.
pub const MAX_DEPTH: usize = 32;

/// One pattern: `*` is any run of characters within one path component, `?` one character.
/// A pattern without `/` matches a file's name at any depth (`*.slp`); one with `/` matches
/// the whole path from the working directory (`results/*.csv`), and a leading `**/` lets that
/// start at any depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: String,
    any_depth: bool,
    /// The pattern's components, matched one against one.
    parts: Vec<String>,
}

impl Pattern {
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let bad = |why: &str| Error::validation(format!("collect pattern {raw:?} {why}"));
        if raw.is_empty() {
            return Err(bad("is empty"));
        }
        if raw.len() > MAX_PATTERN_BYTES {
            return Err(bad(&format!("is longer than {MAX_PATTERN_BYTES} bytes")));
        }
        if raw.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("has a control character or a backslash"));
        }
        if raw.starts_with('/') {
            return Err(bad(
                "is absolute; patterns are relative to the working directory",
            ));
        }
        let (any_depth, rest) = match raw.strip_prefix("**/") {
            Some(rest) => (true, rest),
            None => (!raw.contains('/'), raw),
        };
        let parts: Vec<String> = rest.split('/').map(str::to_string).collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p == "." || p == ".." || p.contains("**"))
        {
            return Err(bad(
                "has an empty, `.`, `..` or `**` component (only a leading `**/` is allowed)",
            ));
        }
        Ok(Pattern {
            raw: raw.to_string(),
            any_depth,
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether `path` (a `CollectedPath`) is one this pattern collects.
    pub fn matches(&self, path: &CollectedPath) -> bool {
        let components: Vec<&str> = path.as_str().split('/').collect();
        if self.any_depth {
            components.len() >= self.parts.len()
                && self.matches_parts(&components[components.len() - self.parts.len()..])
        } else {
            components.len() == self.parts.len() && self.matches_parts(&components)
        }
    }

    fn matches_parts(&self, components: &[&str]) -> bool {
        self.parts
            .iter()
            .zip(components)
            .all(|(p, c)| glob_component(p, c))
    }
}

/// `*` and `?` within one component, by characters (never by byte index).
fn glob_component(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // The classic two-pointer match with backtracking to the last `*`: linear in practice,
    // never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What to collect: `GPUFLEET_COLLECT_PATTERNS`, comma-separated (`*.slp,*.ipynb`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patterns(Vec<Pattern>);

impl Patterns {
    pub fn parse(raw: &str) -> Result<Self> {
        let patterns = raw
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Pattern::parse)
            .collect::<Result<Vec<_>>>()?;
        if patterns.len() > MAX_PATTERNS {
            return Err(Error::validation(format!(
                "at most {MAX_PATTERNS} collect patterns (got {})",
                patterns.len()
            )));
        }
        Ok(Patterns(patterns))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pattern> {
        self.0.iter()
    }

    /// Whether any pattern collects `path`.
    pub fn collects(&self, path: &CollectedPath) -> bool {
        self.0.iter().any(|p| p.matches(path))
    }
}

/// A collected file's name: a relative path under the VM's working directory, `/`-separated,
/// with no empty, `.` or `..` component, no control character or backslash, and within
/// the length limits. Stored under the VM's own prefix, it can never name anything outside.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CollectedPath(String);

impl CollectedPath {
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |why: String| Error::validation(format!("file name {raw:?} {why}"));
        if raw.is_empty() {
            return Err(bad("is empty".into()));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(bad(format!("is longer than {MAX_PATH_BYTES} bytes")));
        }
        if raw.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("has a control character or a backslash".into()));
        }
        if raw.starts_with('/') {
            return Err(bad("is absolute".into()));
        }
        let components: Vec<&str> = raw.split('/').collect();
        if components.len() > MAX_DEPTH {
            return Err(bad(format!("is more than {MAX_DEPTH} folders deep")));
        }
        for c in &components {
            if c.is_empty() || *c == "." || *c == ".." {
                return Err(bad("has an empty, `.` or `..` component".into()));
            }
            // Hidden files and folders are never collected (the agent skips them too), so
            // no collected name can pose as a store's temporary file.
            if c.starts_with('.') {
                return Err(bad("has a hidden component (starting with `.`)".into()));
            }
            if c.len() > MAX_COMPONENT_BYTES {
                return Err(bad(format!(
                    "has a component longer than {MAX_COMPONENT_BYTES} bytes"
                )));
            }
        }
        Ok(CollectedPath(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Size caps: a file over `per_file` is reported, not truncated; a VM's files together stay
/// within `per_vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_file: u64,
    pub per_vm: u64,
}

/// Why a file is not collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    FileTooLarge { size: u64, cap: u64 },
    VmFull { stored: u64, size: u64, cap: u64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::FileTooLarge { size, cap } => {
                write!(f, "the file is {size} bytes, over the {cap}-byte cap per file")
            }
            Refusal::VmFull { stored, size, cap } => write!(
                f,
                "{stored} bytes are collected from this VM already; {size} more would pass its {cap}-byte cap"
            ),
        }
    }
}

impl Caps {
    /// Whether a file of `size` bytes may be stored when the VM's other files take `stored`
    /// (a new version of a file replaces the old one: pass `stored` without it).
    pub fn admit(&self, size: u64, stored: u64) -> std::result::Result<(), Refusal> {
        if size > self.per_file {
            return Err(Refusal::FileTooLarge {
                size,
                cap: self.per_file,
            });
        }
        if stored.saturating_add(size) > self.per_vm {
            return Err(Refusal::VmFull {
                stored,
                size,
                cap: self.per_vm,
            });
        }
        Ok(())
    }
}

/// Where a VM's collected files live in the object store: `work/<hostname>/<path>`. Only the
/// API writes the key (from an authenticated VM's hostname and a parsed path), so a VM can
/// only ever write under its own prefix.
pub fn object_key(hostname: &str, path: &CollectedPath) -> String {
    format!("{}{}", work_prefix(hostname), path.as_str())
}

/// The prefix of one VM's files.
pub fn work_prefix(hostname: &str) -> String {
    format!("{WORK_PREFIX}{hostname}/")
}

/// The prefix of every VM's files.
pub const WORK_PREFIX: &str = "work/";
/// The prefix of the per-VM manifests (written by the API only, never by a VM).
pub const MANIFEST_PREFIX: &str = "vms/";
/// The prefix of assembled downloads.
pub const EXPORT_PREFIX: &str = "exports/";

pub fn manifest_key(hostname: &str) -> String {
    format!("{MANIFEST_PREFIX}{hostname}.json")
}

/// One file as the object store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub path: String,
    pub size: u64,
    /// The hex SHA-256 the agent reported for the version it uploaded.
    pub sha256: String,
}

/// A file the agent found but the API would not take, and why (reported, never truncated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefusedFile {
    pub path: String,
    pub reason: String,
}

/// What was collected from one VM: kept beside its files, so it outlives the VM's record
/// (the zip names each VM's folder after it, and the dashboard shows it after destroy).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VmManifest {
    pub hostname: String,
    /// The participant's email, when the VM was claimed.
    pub email: Option<String>,
    /// When the agent last finished a sync.
    pub last_sync_at: Option<Millis>,
    /// The latest final-sync request (`Vm::collect_requested_at`) that sync answered.
    pub answered_request: Option<Millis>,
    pub files: Vec<StoredFile>,
    pub refused: Vec<RefusedFile>,
    /// The final-sync request (before a destroy) this VM did not answer in time.
    #[serde(default)]
    pub missed_final_sync: Option<Millis>,
}

impl VmManifest {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The VM's folder in the zip: its hostname, and the participant's email when claimed,
    /// reduced to characters every unzip tool accepts in a name.
    pub fn folder(&self) -> String {
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "@._+-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        match &self.email {
            Some(email) => format!("{} ({})", safe(&self.hostname), safe(email)),
            None => safe(&self.hostname),
        }
    }
}

/// How one VM's final sync before a destroy went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FinalSync {
    pub hostname: String,
    /// It answered the request in time (else its last earlier sync, if any, is what is kept).
    pub answered: bool,
    pub files: usize,
    pub bytes: u64,
    /// Unix milliseconds.
    #[schema(value_type = Option<i64>)]
    pub last_sync_at: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> CollectedPath {
        CollectedPath::parse(p).unwrap()
    }

    #[test]
    fn names_that_could_leave_the_vms_folder_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x.slp",
            "a/../../x.slp",
            "a/./x.slp",
            "a//x.slp",
            "a/",
            "..",
            "a\\..\\x.slp",
            "x\n.slp",
            "x\0.slp",
            "x\u{1b}[31m.slp",
        ] {
            assert!(CollectedPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(CollectedPath::parse("a/".repeat(MAX_DEPTH).trim_end_matches('/')).is_ok());
        assert!(CollectedPath::parse("a/".repeat(MAX_DEPTH + 1).trim_end_matches('/')).is_err());
        assert!(CollectedPath::parse(&"x".repeat(MAX_COMPONENT_BYTES + 1)).is_err());
        assert_eq!(path("labels/été 1.slp").as_str(), "labels/été 1.slp");
        assert!(CollectedPath::parse(".upload-x.slp").is_err());
        assert!(CollectedPath::parse("a/.git/x.slp").is_err());
    }

    #[test]
    fn patterns_match_names_at_any_depth_or_whole_paths() {
        let p = Patterns::parse("*.slp, results/*.csv ,**/models/?.pt,").unwrap();
        assert!(p.collects(&path("a.slp")));
        assert!(p.collects(&path("deep/er/a.slp")));
        assert!(!p.collects(&path("a.slp.bak")));
        assert!(p.collects(&path("results/run.csv")));
        assert!(!p.collects(&path("x/results/run.csv")));
        assert!(!p.collects(&path("results/sub/run.csv")));
        assert!(p.collects(&path("models/a.pt")));
        assert!(p.collects(&path("x/y/models/b.pt")));
        assert!(!p.collects(&path("models/ab.pt")));
        assert!(!p.collects(&path("notes.txt")));
        assert!(Patterns::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_patterns_name_the_pattern() {
        for bad in ["/abs/*.slp", "../*.slp", "a/**/b", "a//b", "x\u{7}"] {
            let e = Patterns::parse(bad).unwrap_err().to_string();
            assert!(e.contains("collect pattern"), "{bad:?}: {e}");
        }
        let many = vec!["*.a"; MAX_PATTERNS + 1].join(",");
        assert!(Patterns::parse(&many).is_err());
    }

    #[test]
    fn glob_is_by_characters_and_backtracks() {
        assert!(glob_component("*", ""));
        assert!(glob_component("a*b*c", "aXXbYYbc"));
        assert!(!glob_component("a*b*c", "aXXbYY"));
        assert!(glob_component("?é*", "xé"));
        assert!(!glob_component("?", "éé"));
        // A long name against many stars stays quick.
        assert!(!glob_component(&"*a".repeat(20), &"b".repeat(199)));
    }

    #[test]
    fn caps_report_rather_than_truncate() {
        let caps = Caps {
            per_file: 10,
            per_vm: 25,
        };
        assert_eq!(caps.admit(10, 15), Ok(()));
        assert_eq!(
            caps.admit(11, 0),
            Err(Refusal::FileTooLarge { size: 11, cap: 10 })
        );
        assert_eq!(
            caps.admit(10, 16),
            Err(Refusal::VmFull {
                stored: 16,
                size: 10,
                cap: 25
            })
        );
        assert!(caps.admit(u64::MAX, u64::MAX).is_err());
    }
}
