//! Keeping personal data out of logs.
//!
//! Emails and logins are logged as fingerprints: an operator can follow one user through the
//! logs without the log holding the address. A plain hash would not do that: anyone with the
//! logs and a staff list could hash every address and read the log back. So the fingerprint is
//! an HMAC under a per-deployment key, derived from the queue signing key that every part of a
//! deployment already holds; without that key a fingerprint cannot be matched to an address.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// What the fingerprint key is derived for, so it is never the signing key itself. A new
/// version gives every user a new fingerprint.
const FINGERPRINT_KEY_LABEL: &[u8] = b"scim-relay pii fingerprint v1";
/// Says in the log line that this is a keyed fingerprint, not a hash anyone can recompute.
const FINGERPRINT_PREFIX: &str = "hmac:";
/// 48 bits: enough to tell a deployment's users apart in logs, short enough to read.
const FINGERPRINT_HEX_CHARS: usize = 12;

/// The key log fingerprints are made with.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

impl FingerprintKey {
    /// The deployment's key: `HMAC-SHA256(queue signing key, "scim-relay pii fingerprint v1")`.
    pub fn derive(signing_key: &Secret) -> Self {
        let mut mac = hmac_with(signing_key.expose().as_bytes());
        mac.update(FINGERPRINT_KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// A key no one else has: fingerprints stay unreadable (and only match within this
    /// process) when no deployment key was set.
    fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(key)
    }

    /// `hmac:` and the first 12 hex digits of `HMAC-SHA256(key, trimmed lower-cased value)`.
    pub fn fingerprint(&self, value: &str) -> String {
        let mut mac = hmac_with(&self.0);
        mac.update(value.trim().to_lowercase().as_bytes());
        let digest = hex::encode(mac.finalize().into_bytes());
        format!("{FINGERPRINT_PREFIX}{}", &digest[..FINGERPRINT_HEX_CHARS])
    }
}

fn hmac_with(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// The deployment's key, set once at start-up.
static DEPLOYMENT_KEY: OnceLock<FingerprintKey> = OnceLock::new();
/// Used only until (or unless) the deployment key is set; kept apart so that a log line
/// written before start-up finished cannot pin the process to it.
static PROCESS_KEY: OnceLock<FingerprintKey> = OnceLock::new();

/// Makes the deployment's fingerprint key (derived from the queue signing key) the one this
/// process logs with. Called where settings become running parts; the first call wins (one
/// process serves one deployment), later ones change nothing. An empty signing key sets
/// nothing, and so does a secret not yet resolved (an ARN: the key is what it names, and a
/// command run with `--aws` reads it later). Returns whether the key in use is now the one
/// derived from `signing_key`.
pub fn set_fingerprint_key(signing_key: &Secret) -> bool {
    if signing_key.is_empty() || signing_key.expose().starts_with("arn:") {
        return false;
    }
    let key = FingerprintKey::derive(signing_key);
    let in_use = DEPLOYMENT_KEY.get_or_init(|| key.clone());
    in_use.0 == key.0
}

/// The fingerprint an operator looks for in the logs: what [`fingerprint`] logs for `value`
/// in a deployment whose queue signing key is `signing_key` (for a `scim-relay fingerprint`
/// command, and the README's recipe).
pub fn fingerprint_for_deployment(signing_key: &Secret, value: &str) -> String {
    FingerprintKey::derive(signing_key).fingerprint(value)
}

/// A short, stable fingerprint of an email or login for log lines: the same person gives the
/// same fingerprint within a deployment, and it cannot be recomputed without the deployment's
/// key.
pub fn fingerprint(value: &str) -> String {
    DEPLOYMENT_KEY
        .get()
        .unwrap_or_else(|| PROCESS_KEY.get_or_init(FingerprintKey::random))
        .fingerprint(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn fingerprint_is_stable_case_insensitive_and_hides_the_address() {
        let a = fingerprint("Jane.Doe@Example.com");
        assert_eq!(a, fingerprint("jane.doe@example.com"));
        assert!(!a.contains("jane"));
        assert!(!a.contains('@'));
        assert_ne!(a, fingerprint("john.doe@example.com"));
    }

    #[test]
    fn a_secrets_arn_is_never_taken_for_the_key() {
        // `history <email> --aws` once keyed fingerprints with the ARN's text: it found nobody.
        assert!(!set_fingerprint_key(&Secret::new(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:QueueSigningKey-AbCdEf"
        )));
        assert!(!set_fingerprint_key(&Secret::default()));
    }

    #[test]
    fn fingerprints_are_keyed_per_deployment() {
        let one = FingerprintKey::derive(&Secret::new("signing-key-one"));
        let two = FingerprintKey::derive(&Secret::new("signing-key-two"));
        let email = "jane.doe@example.com";
        assert_eq!(
            one.fingerprint(email),
            FingerprintKey::derive(&Secret::new("signing-key-one")).fingerprint(email)
        );
        assert_ne!(one.fingerprint(email), two.fingerprint(email));
        // Not a hash anyone with a staff list can recompute.
        let plain = hex::encode(Sha256::digest(email.as_bytes()));
        for fp in [one.fingerprint(email), fingerprint(email)] {
            assert!(!fp.contains(&plain[..FINGERPRINT_HEX_CHARS]), "{fp}");
            assert!(fp.starts_with("hmac:"), "{fp}");
        }
        assert_eq!(
            fingerprint_for_deployment(&Secret::new("signing-key-one"), email),
            one.fingerprint(email)
        );
    }

    #[test]
    fn the_readmes_openssl_recipe_gives_the_same_fingerprint() {
        // The figure the README's two openssl lines print for this key and address.
        assert_eq!(
            fingerprint_for_deployment(
                &Secret::new("example-signing-key"),
                " Jane.Doe@example.com"
            ),
            "hmac:fd9d0628d92d"
        );
        let key = FingerprintKey::derive(&Secret::new("example-signing-key"));
        assert!(!format!("{key:?}").contains(&hex::encode(key.0)));
    }
}

/// Replaces every word that looks like an email address, for error texts that echo input
/// (a target's "userName jane@… already exists") before they reach a log or a dead letter.
pub fn redact_emails(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains('@') {
                let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric());
                word.replace(trimmed, &fingerprint(trimmed))
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn emails_in_text_are_replaced_by_fingerprints() {
        let out = redact_emails("userName \"jane@example.com\" already exists");
        assert!(!out.contains("jane@example.com"), "{out}");
        assert!(out.starts_with("userName \"hmac:"), "{out}");
        assert!(out.ends_with("\" already exists"), "{out}");
        assert_eq!(redact_emails("no address here"), "no address here");
    }
}
