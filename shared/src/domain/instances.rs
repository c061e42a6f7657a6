//! Instances created from offers (`/api/v1/instances`): the record, its lifecycle and the
//! validation of what a caller may put on a machine (image, start-up script, SSH key).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::vm::Millis;
use crate::error::{Error, Result};

/// Largest `onstart_script`, bytes (EC2 user_data is 16 KB including our own script).
pub const MAX_ONSTART_BYTES: usize = 8 * 1024;
/// Longest `label`.
pub const MAX_LABEL_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    /// Recorded; the provider has not confirmed the machine yet.
    Pending,
    /// The provider has it; it is booting.
    Loading,
    Running,
    Stopping,
    Stopped,
    /// Asked to end; not yet confirmed.
    Destroying,
    /// The provider confirmed it is gone (or going and billing stopped).
    Destroyed,
    /// The provider refused it (`status_reason` says why); nothing runs.
    Failed,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Pending => "pending",
            InstanceStatus::Loading => "loading",
            InstanceStatus::Running => "running",
            InstanceStatus::Stopping => "stopping",
            InstanceStatus::Stopped => "stopped",
            InstanceStatus::Destroying => "destroying",
            InstanceStatus::Destroyed => "destroyed",
            InstanceStatus::Failed => "failed",
        }
    }

    /// Ended for good: no machine, no bill.
    pub fn is_final(self) -> bool {
        matches!(self, InstanceStatus::Destroyed | InstanceStatus::Failed)
    }
}

/// A machine as a provider reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProviderInstance {
    pub provider_id: String,
    /// Our record's id, carried by the machine (EC2 tag, Vast label).
    pub record_id: Option<String>,
    /// `None`: the provider does not say yet.
    pub status: Option<InstanceStatus>,
    pub launched_at: Millis,
    pub public_ip: Option<String>,
    pub ssh_host: Option<String>,
    pub ssh_port: Option<u16>,
}

/// The record of an instance created through the API. Written before the provider is
/// called (status `pending`), so a machine never exists without a record naming it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudInstance {
    /// `<provider prefix>_<16 hex>`, e.g. `vast_3f2a…`.
    pub id: String,
    pub owner: String,
    pub provider: String,
    /// The provider's id (EC2 instance id, Vast contract id) once it exists.
    pub provider_id: Option<String>,
    /// The offer's provider id.
    pub offer_id: String,
    pub name: String,
    pub status: InstanceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub gpu_model: String,
    pub gpu_count: u32,
    pub cpu_count: u32,
    pub ram_gb: f64,
    pub storage_gb: f64,
    pub price_per_hour: f64,
    pub region: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub onstart_script: Option<String>,
    #[serde(default)]
    pub ssh_key: Option<String>,
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub ssh_host: Option<String>,
    #[serde(default)]
    pub ssh_port: Option<u16>,
    /// What the offer said beyond the common fields (market, instance type, machine id...).
    #[serde(default)]
    pub offer_data: serde_json::Value,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Bumped by every save; a save expecting an older version is refused.
    #[serde(default)]
    pub version: u64,
    /// Where `price_per_hour` came from (the offer's source).
    #[serde(default)]
    pub price_source: Option<String>,
    /// When the provider first had a machine for it (spend runs from here).
    #[serde(default)]
    pub started_at: Option<Millis>,
    /// When it became destroyed or failed (spend stops here).
    #[serde(default)]
    pub ended_at: Option<Millis>,
    /// What its start holds of its owner's monthly budget.
    #[serde(default)]
    pub budget_hold: Option<crate::domain::costs::BudgetHold>,
}

impl CloudInstance {
    /// Marks when its machine started and ended, once each: called on every save, so the
    /// spend record can never start twice or end twice.
    pub fn meter(&mut self, now: Millis) {
        if self.started_at.is_none() && self.provider_id.is_some() {
            self.started_at = Some(now);
        }
        if self.ended_at.is_none() && self.status.is_final() && self.started_at.is_some() {
            self.ended_at = Some(now);
        }
    }

    /// Its spend: the offer's price from its start to its end (or now).
    pub fn spend_record(&self) -> Option<crate::domain::costs::SpendRecord> {
        Some(crate::domain::costs::SpendRecord {
            id: format!("instance:{}", self.id),
            kind: crate::domain::costs::SpendKind::Instance,
            name: self.id.clone(),
            owner: Some(self.owner.clone()),
            request_id: None,
            price: Some(crate::domain::costs::Price {
                usd_per_hour: self.price_per_hour,
                source: self
                    .price_source
                    .clone()
                    .unwrap_or_else(|| format!("{} offer", self.provider)),
            }),
            started_at: self.started_at?,
            ended_at: self.ended_at,
        })
    }

    /// Takes what the provider reports; returns whether anything changed. A record that
    /// is destroyed or failed stays so.
    pub fn observe(&mut self, seen: &ProviderInstance, now: Millis) -> bool {
        let before = self.clone();
        if self.provider_id.is_none() {
            self.provider_id = Some(seen.provider_id.clone());
        }
        if !self.status.is_final() {
            if let Some(status) = seen.status {
                // A stop or destroy in flight is not undone by a stale "running".
                let keep = matches!(
                    (self.status, status),
                    (InstanceStatus::Destroying, s) if !s.is_final()
                ) || matches!(
                    (self.status, status),
                    (
                        InstanceStatus::Stopping,
                        InstanceStatus::Running | InstanceStatus::Loading
                    )
                );
                if !keep {
                    self.status = status;
                }
            } else if self.status == InstanceStatus::Pending {
                self.status = InstanceStatus::Loading;
            }
        }
        if seen.public_ip.is_some() {
            self.public_ip = seen.public_ip.clone();
        }
        if seen.ssh_host.is_some() {
            self.ssh_host = seen.ssh_host.clone();
            self.ssh_port = seen.ssh_port;
        }
        let changed = *self != before;
        if changed {
            self.updated_at = now;
        }
        changed
    }

    /// The id prefix of each provider's records.
    pub fn id_prefix(provider: &str) -> &'static str {
        match provider {
            "aws_ec2" => "aws",
            "vast_ai" => "vast",
            "local" => "local",
            _ => "inst",
        }
    }

    pub fn new_id(provider: &str) -> String {
        format!(
            "{}_{}",
            Self::id_prefix(provider),
            hex::encode(rand::random::<[u8; 8]>())
        )
    }
}

/// A validated `POST /api/v1/instances` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInstance {
    pub provider: String,
    /// The offer's provider id (a full `<provider>:…` id is accepted and stripped).
    pub offer_id: String,
    pub image: Option<String>,
    pub label: String,
    pub onstart_script: Option<String>,
    pub ssh_key: Option<String>,
}

// The body as sent (`NewInstance::parse` validates it); its schema is the API's. Values are
// trimmed first, so the patterns allow `char::is_whitespace` around them.
/// A new instance from an offer.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstanceBody {
    /// The offer's provider, one of GET /api/v1/providers.
    #[schema(value_type = String, required = true, pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[a-z0-9_]+[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$")]
    provider: Option<String>,
    #[schema(schema_with = offer_id_schema, required = true)]
    offer_id: Option<serde_json::Value>,
    /// A container image (`[registry/]name[:tag][@digest]`, at most 255 characters); required
    /// for vast_ai.
    #[schema(
        pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*([A-Za-z0-9][A-Za-z0-9._/:@-]{0,254})?[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    image: Option<String>,
    /// The instance's name (at most 64 characters; default `gpufleet instance`).
    #[schema(
        pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u001f\\u007f-\\u009f]{0,64}[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    label: Option<String>,
    /// A script run at first boot (at most 8192 bytes, no NUL).
    #[schema(max_length = 8192, pattern = "^[^\\u0000]*$")]
    onstart_script: Option<String>,
    /// One OpenSSH public key line (`<type> <base64> [comment]`) allowed to log in.
    #[schema(
        pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*((ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com) [A-Za-z0-9+/=]+( [^\\u0000-\\u001f\\u007f-\\u009f]*)?)?[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    ssh_key: Option<String>,
}

/// `offer_id`: a string, or a number (Vast.ai's offer ids are numbers in its own API).
fn offer_id_schema() -> utoipa::openapi::schema::OneOfBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .description(Some(
            "An offer's provider_id (or its full id) from GET /api/v1/offers/search.",
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[A-Za-z0-9._:-]+[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Number))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::validation(msg)
}

impl NewInstance {
    pub fn parse(body: &serde_json::Value) -> Result<Self> {
        let b: NewInstanceBody = serde_json::from_value(body.clone())
            .map_err(|e| bad(format!("invalid instance request: {e}")))?;
        let provider = b
            .provider
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("provider is required"))?;
        // Vast offer ids are numbers in their API; accept either spelling.
        let offer_id = match b.offer_id {
            Some(serde_json::Value::String(s)) => s.trim().to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => return Err(bad("offer_id must be a string")),
            None => String::new(),
        };
        let offer_id = offer_id
            .strip_prefix(&format!("{provider}:"))
            .map(str::to_string)
            .unwrap_or(offer_id);
        if offer_id.is_empty()
            || offer_id.len() > 128
            || !offer_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        {
            return Err(bad(
                "offer_id is required: an offer's provider_id (or id) from /api/v1/offers/search",
            ));
        }
        let image = b
            .image
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty());
        if let Some(image) = &image {
            validate_image(image)?;
        }
        let label = b
            .label
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "gpufleet instance".to_string());
        if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(bad(format!(
                "label must be at most {MAX_LABEL_CHARS} characters without control characters"
            )));
        }
        let onstart_script = b.onstart_script.filter(|s| !s.trim().is_empty());
        if let Some(script) = &onstart_script {
            if script.len() > MAX_ONSTART_BYTES {
                return Err(bad(format!(
                    "onstart_script must be at most {MAX_ONSTART_BYTES} bytes"
                )));
            }
            if script.contains('\0') {
                return Err(bad("onstart_script must not contain NUL bytes"));
            }
        }
        let ssh_key = b
            .ssh_key
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        if let Some(key) = &ssh_key {
            validate_ssh_key(key)?;
        }
        Ok(NewInstance {
            provider,
            offer_id,
            image,
            label,
            onstart_script,
            ssh_key,
        })
    }
}

/// A container image reference (`[registry/]name[:tag][@digest]`): letters, digits and
/// `._/:@-`, starting with a letter or digit (so it can never be read as an option).
pub fn validate_image(image: &str) -> Result<()> {
    let ok = image.len() <= 255
        && image
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "image must be a container image reference such as pytorch/pytorch:latest",
        ))
    }
}

const SSH_KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One OpenSSH public key line: `<type> <base64 blob> [comment]`, where the blob decodes
/// and starts with the same type name (as `ssh-keygen -l` checks).
pub fn validate_ssh_key(key: &str) -> Result<()> {
    let invalid = || {
        bad("ssh_key must be one OpenSSH public key line, e.g. \"ssh-ed25519 AAAAC3Nza... you@host\"")
    };
    if key.len() > 8192 || key.chars().any(|c| c.is_control()) {
        return Err(invalid());
    }
    let mut parts = key.splitn(3, ' ');
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(invalid());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| invalid())?;
    let declared = raw
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize);
    match declared.and_then(|n| raw.get(4..4 + n)) {
        Some(name) if name == kind.as_bytes() => Ok(()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1qR0p0mB8vK1y3yBv7Q0pJ1w3lq8m6kYv9r0sXhG2b test@host";

    #[test]
    fn a_full_body_parses() {
        let n = NewInstance::parse(&json!({
            "provider": "vast_ai", "offer_id": 12345, "image": "pytorch/pytorch:latest",
            "label": "My Training Instance", "onstart_script": "#!/bin/bash\necho 'hi'; $(id)",
            "ssh_key": ED25519
        }))
        .unwrap();
        assert_eq!(n.offer_id, "12345");
        assert_eq!(n.label, "My Training Instance");
        let n = NewInstance::parse(
            &json!({"provider": "aws_ec2", "offer_id": "aws_ec2:us-east-1:g5.xlarge:spot"}),
        )
        .unwrap();
        assert_eq!(n.offer_id, "us-east-1:g5.xlarge:spot");
        assert_eq!(n.image, None);
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field() {
        for (body, field) in [
            (json!({"offer_id": "1"}), "provider"),
            (json!({"provider": "vast_ai"}), "offer_id"),
            (
                json!({"provider": "vast_ai", "offer_id": "1; rm"}),
                "offer_id",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "image": "-v /:/host"}),
                "image",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "image": "a b"}),
                "image",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "label": "x".repeat(65)}),
                "label",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "onstart_script": "x".repeat(9000)}),
                "onstart_script",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "ssh_key": "ssh-rsa notbase64!"}),
                "ssh_key",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "ssh_key": "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIH1qR0p0mB8vK1y3yBv7Q0pJ1w3lq8m6kYv9r0sXhG2b"}),
                "ssh_key",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "ssh_key": format!("{ED25519}\nssh-rsa AAAA")}),
                "ssh_key",
            ),
            (
                json!({"provider": "vast_ai", "offer_id": "1", "extra": 1}),
                "extra",
            ),
        ] {
            let err = NewInstance::parse(&body).unwrap_err().to_string();
            assert!(err.contains(field), "{body}: {err}");
        }
    }

    #[test]
    fn observing_moves_forward_only() {
        let mut rec = CloudInstance {
            id: "aws_1".into(),
            owner: "u".into(),
            provider: "aws_ec2".into(),
            provider_id: None,
            offer_id: "o".into(),
            name: "n".into(),
            status: InstanceStatus::Pending,
            status_reason: None,
            gpu_model: "A10G".into(),
            gpu_count: 1,
            cpu_count: 4,
            ram_gb: 16.0,
            storage_gb: 250.0,
            price_per_hour: 1.0,
            region: "us-east-1".into(),
            image: None,
            onstart_script: None,
            ssh_key: None,
            public_ip: None,
            ssh_host: None,
            ssh_port: None,
            offer_data: serde_json::Value::Null,
            created_at: 0,
            updated_at: 0,
            version: 0,
            price_source: None,
            started_at: None,
            ended_at: None,
            budget_hold: None,
        };
        let seen = |status| ProviderInstance {
            provider_id: "i-1".into(),
            status,
            public_ip: Some("1.2.3.4".into()),
            ..ProviderInstance::default()
        };
        assert!(rec.observe(&seen(None), 5));
        assert_eq!(rec.status, InstanceStatus::Loading);
        assert_eq!(rec.provider_id.as_deref(), Some("i-1"));
        rec.status = InstanceStatus::Destroying;
        assert!(!rec.observe(&seen(Some(InstanceStatus::Running)), 6));
        assert!(rec.observe(&seen(Some(InstanceStatus::Destroyed)), 7));
        assert!(!rec.observe(&seen(Some(InstanceStatus::Running)), 8));
        assert_eq!(rec.status, InstanceStatus::Destroyed);
    }
}
