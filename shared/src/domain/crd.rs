//! Chrome Remote Desktop command validation: the command-injection defence.
//!
//! A participant pastes the command Google shows them. The command later runs on a VM,
//! so it is untrusted input. We accept it only when it has exactly one `--code` flag whose
//! value is a plain OAuth code, and the rest carries no shell control syntax. What we keep
//! is not the pasted text but a canonical command rebuilt from the code alone, so nothing
//! a stranger typed besides the code ever reaches a shell.

use crate::error::{Error, Result};

/// Longest command we accept; Google's is about 250 characters.
pub const MAX_CRD_COMMAND_LEN: usize = 2048;

/// Where Chrome Remote Desktop's host starter lives on the VM image.
pub const CRD_START_HOST: &str = "/opt/google/chrome-remote-desktop/start-host";
/// The redirect URL Google's generated commands carry.
pub const CRD_REDIRECT_URL: &str = "https://remotedesktop.google.com/_/oauthredirect";

/// A validated CRD command, reduced to its OAuth code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdCommand {
    code: String,
}

impl CrdCommand {
    /// Validates a pasted command; the error message says what is wrong, for the user.
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::validation("The CRD command is required."));
        }
        if raw.len() > MAX_CRD_COMMAND_LEN {
            return Err(Error::validation("The CRD command is too long."));
        }
        reject_shell_syntax(raw)?;

        let tokens: Vec<&str> = raw.split_whitespace().collect();
        let mut codes = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            if token == "--code" {
                // `--code <value>`: the value is the next token.
                codes.push(tokens.get(i + 1).copied().unwrap_or(""));
                i += 2;
                continue;
            }
            if let Some(value) = token.strip_prefix("--code=") {
                codes.push(value);
            }
            i += 1;
        }
        let value = match codes.as_slice() {
            [] => return Err(invalid("it has no --code flag")),
            [one] => *one,
            _ => return Err(invalid("it has more than one --code flag")),
        };
        let code = strip_one_pair_of_quotes(value)?;
        if code.is_empty() {
            return Err(invalid("the --code value is empty"));
        }
        if !code.chars().all(is_code_char) {
            return Err(invalid(
                "the --code value may only contain letters, digits, '_', '/' and '-'",
            ));
        }
        Ok(CrdCommand {
            code: code.to_string(),
        })
    }

    /// The OAuth code, safe to pass as one argv element.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The command we store and hand to the VM: Google's form, rebuilt around the code.
    pub fn canonical(&self) -> String {
        format!(
            "DISPLAY= {CRD_START_HOST} --code=\"{}\" --redirect-url=\"{CRD_REDIRECT_URL}\" --name=$(hostname)",
            self.code
        )
    }
}

fn invalid(why: &str) -> Error {
    Error::validation(format!("Invalid CRD command: {why}."))
}

fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '-')
}

fn strip_one_pair_of_quotes(value: &str) -> Result<&str> {
    let starts = value.chars().next();
    let ends = value.chars().last();
    match (starts, ends) {
        (Some(q @ ('"' | '\'')), Some(e)) if value.len() >= 2 && e == q => Ok(value
            .strip_prefix(q)
            .and_then(|v| v.strip_suffix(q))
            .unwrap_or_default()),
        (Some('"' | '\''), _) | (_, Some('"' | '\'')) => {
            Err(invalid("the --code value has an unmatched quote"))
        }
        _ => Ok(value),
    }
}

/// Google's command uses `$(hostname)` and nothing else from the shell; anything that
/// chains, pipes, redirects or substitutes is refused outright.
fn reject_shell_syntax(raw: &str) -> Result<()> {
    if raw
        .chars()
        .any(|c| matches!(c, ';' | '|' | '&' | '`' | '<' | '>' | '\n' | '\r' | '\0'))
    {
        return Err(invalid(
            "it contains shell control characters (; | & ` < > or a line break)",
        ));
    }
    let without_hostname = raw.replace("$(hostname)", "");
    if without_hostname.contains('$') {
        return Err(invalid(
            "it contains a shell substitution other than $(hostname)",
        ));
    }
    Ok(())
}

/// A user name as `useradd` takes it: 1-32 of a-z, 0-9, `_` and `-`, starting with a letter
/// or `_`. The desktop user's name goes into the boot script and to `getent`, so nothing
/// else is accepted.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOGLE: &str = "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/0AbCdEf_gh-IJ/kl\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)";

    #[test]
    fn accepts_real_forms() {
        let cases = [
            (GOOGLE, "4/0AbCdEf_gh-IJ/kl"),
            ("--code 4/abc123", "4/abc123"),
            ("--code='4/abc123'", "4/abc123"),
            ("--code=\"4/abc123\"", "4/abc123"),
            ("start-host --code=4/abc123 --name=x", "4/abc123"),
            ("  --code=abc  ", "abc"),
        ];
        for (raw, code) in cases {
            let parsed = CrdCommand::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(parsed.code(), code, "{raw:?}");
        }
    }

    #[test]
    fn rejects_injection_and_malformed() {
        let cases = [
            "--code=abc;id",
            "--code=abc|id",
            "--code=$(id)",
            "--code=`id`",
            "--code=abc${IFS}id",
            "--code=abc&&id",
            "--code=abc && id",
            "--code=a=b",
            "--code='x;id'",
            "--code='x id'",
            "--code=\"abc",
            "--code=abc\"",
            "--code='abc\"",
            "--code=",
            "--code=\"\"",
            "--code",
            "start-host --name=x",
            "--code=abc --code=def",
            "--code abc --code=def",
            "--code=abc\nid",
            "--code=abc > /etc/passwd",
            "--code=abc $HOME",
            "--code=ab%c",
            "--code=abc.def",
            "",
            "   ",
        ];
        for raw in cases {
            assert!(CrdCommand::parse(raw).is_err(), "{raw:?} must be rejected");
        }
    }

    #[test]
    fn rejects_overlong_commands() {
        let raw = format!("--code={}", "a".repeat(MAX_CRD_COMMAND_LEN));
        assert!(CrdCommand::parse(&raw).is_err());
    }

    #[test]
    fn canonical_form_keeps_only_the_code() {
        let cmd = CrdCommand::parse("extra-args --code 4/abc123 --name=whatever").unwrap();
        assert_eq!(
            cmd.canonical(),
            "DISPLAY= /opt/google/chrome-remote-desktop/start-host --code=\"4/abc123\" --redirect-url=\"https://remotedesktop.google.com/_/oauthredirect\" --name=$(hostname)"
        );
        // The canonical form parses back to the same code.
        assert_eq!(CrdCommand::parse(&cmd.canonical()).unwrap(), cmd);
    }
}
