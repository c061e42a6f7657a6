//! Idempotent creates, one policy for every create that takes an `Idempotency-Key`
//! (requests and instances) in every store: the same key from the same user within one
//! scope gets the first result back; the fingerprint (a digest of the request body) tells a
//! true repeat from a different request reusing the key. Stores only look the key up and
//! record it, in the same transaction as the record it names.

use crate::error::{Error, Result};

/// An `Idempotency-Key` a caller sent with a create, with the fingerprint of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Which kind of record a key names: the same key may be used once per scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Requests,
    Instances,
}

/// What a key that was seen before means for this create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// The same body again: answer with the record `id`.
    Repeat { id: String },
    /// A different body under the same key.
    Mismatch,
}

impl Idempotency {
    /// The `Idempotency-Key` a caller sent (if any), with the fingerprint of its body.
    pub fn from_header(
        key: Option<&str>,
        fingerprint: impl FnOnce() -> String,
    ) -> Result<Option<Self>> {
        match key {
            None => Ok(None),
            Some(key) if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY => {
                Err(Error::validation(format!(
                    "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters"
                )))
            }
            Some(key) => Ok(Some(Idempotency {
                key: key.to_string(),
                fingerprint: fingerprint(),
            })),
        }
    }

    /// Judges this create against what the store recorded for the key: the fingerprint and
    /// the id of the record it named.
    pub fn judge(&self, recorded_fingerprint: &str, recorded_id: String) -> Prior {
        if recorded_fingerprint == self.fingerprint {
            Prior::Repeat { id: recorded_id }
        } else {
            Prior::Mismatch
        }
    }
}

/// How an idempotent create under a quota ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome<T> {
    Created,
    /// The idempotency key was used before with the same body: the original record.
    Replayed(Box<T>),
    /// The idempotency key was used before with a different body.
    IdempotencyMismatch,
    /// Recording it would take the user over their GPU quota; nothing was recorded.
    OverQuota {
        in_use: u32,
        quota: u32,
    },
    /// Its budget hold would take the user's month past their budget; nothing was
    /// recorded. `held`: what the month's holds were, micro-dollars.
    OverBudget {
        held: i64,
    },
}

impl<T> CreateOutcome<T> {
    /// The answer to a key seen before, given the record a repeat names (looked up by the
    /// store). A key whose record is gone is a broken store, not a new create.
    pub fn of_prior(
        prior: Prior,
        original: impl FnOnce(&str) -> Result<Option<T>>,
    ) -> Result<Self> {
        match prior {
            Prior::Mismatch => Ok(CreateOutcome::IdempotencyMismatch),
            Prior::Repeat { id } => match original(&id)? {
                Some(record) => Ok(CreateOutcome::Replayed(Box::new(record))),
                None => Err(Error::Internal(anyhow::anyhow!(
                    "idempotency key names {id}, which is not recorded"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idem(fingerprint: &str) -> Idempotency {
        Idempotency {
            key: "k".into(),
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn the_same_body_repeats_and_another_mismatches() {
        assert_eq!(
            idem("f1").judge("f1", "r1".into()),
            Prior::Repeat { id: "r1".into() }
        );
        assert_eq!(idem("f2").judge("f1", "r1".into()), Prior::Mismatch);
    }

    #[test]
    fn a_repeat_answers_the_original_and_a_lost_original_is_an_error() {
        let found = CreateOutcome::of_prior(Prior::Repeat { id: "r1".into() }, |id| {
            Ok(Some(id.to_string()))
        });
        assert_eq!(
            found.unwrap(),
            CreateOutcome::Replayed(Box::new("r1".to_string()))
        );
        let lost =
            CreateOutcome::<String>::of_prior(Prior::Repeat { id: "r1".into() }, |_| Ok(None));
        assert!(matches!(lost, Err(Error::Internal(_))));
        let other = CreateOutcome::<String>::of_prior(Prior::Mismatch, |_| unreachable!());
        assert_eq!(other.unwrap(), CreateOutcome::IdempotencyMismatch);
    }

    #[test]
    fn keys_are_bounded() {
        assert!(Idempotency::from_header(None, String::new)
            .unwrap()
            .is_none());
        assert!(Idempotency::from_header(Some(""), String::new).is_err());
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY + 1);
        assert!(Idempotency::from_header(Some(&long), String::new).is_err());
        let ok = Idempotency::from_header(Some("abc"), || "fp".into())
            .unwrap()
            .unwrap();
        assert_eq!(ok.fingerprint, "fp");
    }
}
