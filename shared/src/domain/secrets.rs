//! Per-VM bearer tokens and per-assignment PINs.
//!
//! A token is 256 random bits, so a fast hash (SHA-256) is as strong as a slow password
//! hash here and costs microseconds instead of a CPU-second per boot. Only the hash is
//! stored; comparison is constant-time.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A VM's bearer token, as handed to the VM once at launch.
#[derive(Clone, PartialEq, Eq)]
pub struct VmToken(String);

impl VmToken {
    /// 32 bytes from a CSPRNG (rand's thread RNG: ChaCha12 seeded from the OS), hex encoded.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        VmToken(hex::encode(bytes))
    }

    /// A token received from elsewhere (a queued job).
    pub fn from_plain(token: String) -> Self {
        VmToken(token)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl std::fmt::Debug for VmToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VmToken(..)")
    }
}

/// A participant's seat credential, held in an HttpOnly cookie and in their private seat
/// link: 64 hex digits, the first 12 the claim time in milliseconds and the other 52 (208
/// bits) from a CSPRNG. Only its stored form (`SeatToken::hash`) is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct SeatToken(String);

/// Hex digits of the time prefix.
const SEAT_TIME_DIGITS: usize = 12;

impl SeatToken {
    pub fn generate(now: i64) -> Self {
        let mut random = [0u8; 26];
        rand::rng().fill(&mut random);
        let time = now.clamp(0, 0xffff_ffff_ffff);
        SeatToken(format!("{time:012x}{}", hex::encode(random)))
    }

    /// A presented token, if it has the shape of one (64 lowercase hex digits): anything
    /// else is refused before any store lookup.
    pub fn parse(presented: &str) -> Option<Self> {
        (presented.len() == 64
            && presented
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| SeatToken(presented.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored form, by which stores look seats up: the token's time prefix, then the
    /// SHA-256 of the whole token. The prefix keeps new keys at the end of an ordered index
    /// (SQLite's), so a burst of claims writes a few index pages instead of one per claim;
    /// it is the claim time, no secret.
    pub fn hash(&self) -> String {
        let time = self.0.get(..SEAT_TIME_DIGITS).unwrap_or_default();
        format!("{time}{}", TokenHash::of(&self.0).0)
    }
}

impl std::fmt::Debug for SeatToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeatToken(..)")
    }
}

/// The stored form of a token: lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(hex::encode(Sha256::digest(token.as_bytes())))
    }

    /// Wraps a hash read back from a store.
    pub fn from_stored(hex: String) -> Self {
        TokenHash(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time check of a presented token against this hash.
    pub fn matches(&self, presented: &str) -> bool {
        let presented = TokenHash::of(presented);
        presented.0.as_bytes().ct_eq(self.0.as_bytes()).into()
    }

    /// The VM's CloudWatch log stream: `<hostname>.<proof>`, where the proof is derived from
    /// its token. A VM's role may write any stream of the log group (IAM cannot name a
    /// stream after the instance: every per-instance policy variable holds a `:`, which
    /// stream names may not), so the subscriber files lines under a VM only when the proof
    /// is that VM's, which no other VM can compute or list.
    pub fn log_stream(&self, hostname: &str) -> String {
        format!("{hostname}.{}", self.log_stream_proof())
    }

    /// The hostname a log stream belongs to, if its proof is this hash's (constant time).
    pub fn owns_log_stream<'a>(&self, stream: &'a str) -> Option<&'a str> {
        let (hostname, proof) = stream.rsplit_once('.')?;
        let ok: bool = proof
            .as_bytes()
            .ct_eq(self.log_stream_proof().as_bytes())
            .into();
        ok.then_some(hostname)
    }

    fn log_stream_proof(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"gpufleet log stream\0")
            .chain_update(self.0.as_bytes())
            .finalize();
        hex::encode(&digest[..16])
    }
}

/// The hostname a log stream claims to be (checked against the VM's token hash).
pub fn log_stream_hostname(stream: &str) -> Option<&str> {
    stream.rsplit_once('.').map(|(hostname, _)| hostname)
}

/// The 6-digit PIN a participant types into Chrome Remote Desktop. New per assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    pub fn generate() -> Self {
        // rand's thread RNG is a CSPRNG (ChaCha12, seeded and reseeded from the OS).
        let n: u32 = rand::rng().random_range(0..1_000_000);
        Pin(format!("{n:06}"))
    }

    pub fn from_stored(pin: String) -> Self {
        Pin(pin)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn seat_tokens_sort_by_time_and_hide_the_rest() {
        let a = SeatToken::generate(0x0102_0304_0506);
        let b = SeatToken::generate(0x0102_0304_0507);
        assert!(a.as_str().starts_with("010203040506") && a.as_str().len() == 64);
        assert_eq!(SeatToken::parse(a.as_str()), Some(a.clone()));
        assert!(a.hash().starts_with("010203040506") && a.hash() < b.hash());
        assert_ne!(a.hash(), SeatToken::generate(0x0102_0304_0506).hash());
        for bad in ["", "zz", &"A".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert!(SeatToken::parse(bad).is_none(), "{bad}");
        }
    }
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_are_random_and_verify_only_themselves() {
        let a = VmToken::generate();
        let b = VmToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        let hash = a.hash();
        assert!(hash.matches(a.as_str()));
        assert!(!hash.matches(b.as_str()));
        assert!(!hash.matches(""));
        assert_ne!(hash.as_str(), a.as_str(), "only the hash is kept");
    }

    #[test]
    fn pins_are_six_digits_and_vary() {
        let pins: HashSet<String> = (0..200).map(|_| Pin::generate().0).collect();
        assert!(pins
            .iter()
            .all(|p| p.len() == 6 && p.chars().all(|c| c.is_ascii_digit())));
        // 200 draws from a million values: a constant or tiny range would collapse this.
        assert!(pins.len() > 190, "only {} distinct PINs", pins.len());
    }
}
