//! A secret value that never prints and only compares in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A configured secret (shared secret, client state, token, signing key).
///
/// `Debug` and `Display` never show the value, so a secret can sit in a config struct that is
/// logged without leaking. Comparison hashes both sides first, so neither the content nor the
/// length of the secret leaks through timing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the few places that must send it (an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality with a presented value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let ours = Sha256::digest(self.0.as_bytes());
        let theirs = Sha256::digest(presented);
        ours.ct_eq(&theirs).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(SecretVisitor)
    }
}

/// Reads a secret as text. serde's own messages for a value of the wrong type quote it
/// ("invalid type: integer `20240917`, expected a string"), which would print a numeric secret
/// into the start-up error and the log; these name only the type.
struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: serde::de::Error>(kind: &str) -> Result<Secret, E> {
        Err(E::custom(format!(
            "a secret must be a string, not {kind} (the value is not shown)"
        )))
    }
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a secret, as a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Self::refuse("a boolean")
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Self::refuse("a number")
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
        Self::refuse("a number")
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Self::refuse("a number")
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
        Self::refuse("a number")
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Self::refuse("a number")
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Self::refuse("bytes")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Self::refuse("a list")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Self::refuse("a table")
    }
}

/// Any of several secrets: the current one and, during a rotation, the previous one.
#[derive(Clone, Debug, Default)]
pub struct SecretSet(Vec<Secret>);

impl SecretSet {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self(secrets.into_iter().filter(|s| !s.is_empty()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when any secret matches. Every candidate is compared, so the time taken does not
    /// reveal which one matched.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0
            .iter()
            .fold(false, |found, s| s.matches(presented) | found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", SecretSet::new([s])).contains("hunter2"));
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"abcd"));
        assert!(!s.matches(b""));
    }

    #[test]
    fn an_empty_secret_matches_nothing() {
        assert!(!Secret::new("").matches(b""));
        assert!(SecretSet::new([Secret::new("")]).is_empty());
    }

    #[test]
    fn a_set_accepts_current_and_previous() {
        let set = SecretSet::new([Secret::new("new"), Secret::new("old")]);
        assert!(set.matches(b"new"));
        assert!(set.matches(b"old"));
        assert!(!set.matches(b"other"));
    }
}
