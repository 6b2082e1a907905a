//! The queue message: a small versioned trigger, signed by ingress and checked by the worker, so
//! that only ingress can put work on the queue.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::fit_sqs_id;
pub use crate::model::{EventHint, Source, Subject, Trigger, ENVELOPE_VERSION};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("message is not a scim-relay envelope: {0}")]
    Malformed(String),
    #[error("envelope version {0} is not supported")]
    Version(u8),
    #[error("envelope signature does not verify")]
    BadSignature,
    /// Signed, it says, with a queue key this process does not hold: after a rotation, the
    /// inbound may sign with the new key before a warm worker has read it. Not trusted (the
    /// key id is the sender's word), only a reason to re-read the secrets and try again.
    #[error("envelope names queue key {kid}, which this process does not hold")]
    UnknownKey { kid: String },
}

/// The wire form. The trigger travels as a JSON string so the signature covers exact bytes.
#[derive(Serialize, Deserialize)]
struct Sealed {
    v: u8,
    /// Which key signed it ([`key_id`]): after a rotation, messages in flight and in the
    /// dead-letter queue still name the previous one. Absent in messages from before key ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    sig: String,
    trigger: String,
}

/// A short public name for a signing key: a MAC of a fixed label, so it tells keys apart
/// without saying anything about them.
pub fn key_id(key: &Secret) -> String {
    let mut mac = HmacSha256::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"scim-relay queue key id");
    hex::encode(&mac.finalize().into_bytes()[..4])
}

/// A message ready for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub group_id: String,
    pub dedupe_id: String,
    pub body: String,
}

/// Signs envelopes with the shared queue key, and opens those signed with it or, during a
/// rotation, with the previous one.
#[derive(Clone)]
pub struct EnvelopeSigner {
    key: Secret,
    previous: Option<Secret>,
}

impl std::fmt::Debug for EnvelopeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeSigner").finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl EnvelopeSigner {
    pub fn new(key: Secret) -> Self {
        Self {
            key,
            previous: None,
        }
    }

    /// The deployment's signer: `queue.signing_key`, and `queue.previous_signing_key` while a
    /// rotation is under way.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self::new(settings.queue.signing_key.clone())
            .with_previous(settings.queue.previous_signing_key.clone())
    }

    /// Also opens envelopes signed with `previous` (an empty key is none).
    pub fn with_previous(mut self, previous: Secret) -> Self {
        self.previous = (!previous.is_empty()).then_some(previous);
        self
    }

    /// Whether `kid` names the current key or the previous one.
    fn holds(&self, kid: &str) -> bool {
        std::iter::once(&self.key)
            .chain(self.previous.as_ref())
            .any(|key| key_id(key) == kid)
    }

    fn mac(key: &Secret) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(key.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    fn verifies(key: &Secret, sealed: &Sealed, sig: &[u8]) -> bool {
        let mut mac = Self::mac(key);
        mac.update(sealed.trigger.as_bytes());
        mac.verify_slice(sig).is_ok()
    }

    pub fn seal(&self, trigger: &Trigger) -> QueueMessage {
        // Serialising plain strings and timestamps cannot fail.
        let json = serde_json::to_string(trigger).unwrap_or_default();
        let mut mac = Self::mac(&self.key);
        mac.update(json.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        let sealed = Sealed {
            v: ENVELOPE_VERSION,
            kid: Some(key_id(&self.key)),
            sig,
            trigger: json,
        };
        QueueMessage {
            group_id: trigger.group_id(),
            dedupe_id: fit_sqs_id(hex::encode(Sha256::digest(trigger.dedupe_key().as_bytes()))),
            body: serde_json::to_string(&sealed).unwrap_or_default(),
        }
    }

    pub fn open(&self, body: &str) -> Result<Trigger, EnvelopeError> {
        let sealed: Sealed =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if sealed.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(sealed.v));
        }
        let sig = hex::decode(&sealed.sig).map_err(|_| EnvelopeError::BadSignature)?;
        // Every configured key is tried (the key id only names the key; it is not trusted):
        // each check is a constant-time compare.
        let current = Self::verifies(&self.key, &sealed, &sig);
        let previous = !current
            && self
                .previous
                .as_ref()
                .is_some_and(|p| Self::verifies(p, &sealed, &sig));
        if !current && !previous {
            return Err(match sealed.kid {
                Some(kid) if !self.holds(&kid) => EnvelopeError::UnknownKey { kid },
                _ => EnvelopeError::BadSignature,
            });
        }
        if previous {
            tracing::info!(kid = ?sealed.kid, "envelope signed with the previous queue key");
        }
        let trigger: Trigger = serde_json::from_str(&sealed.trigger)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if trigger.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(trigger.v));
        }
        Ok(trigger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MAX_SQS_ID;
    use chrono::DateTime;

    fn trigger() -> Trigger {
        Trigger {
            v: ENVELOPE_VERSION,
            source: Source::Okta,
            tenant: "example.okta.com".into(),
            subject: Subject::User {
                user_id: "00u1".into(),
            },
            event_id: "9b2f6c1e".into(),
            event_type: "user.lifecycle.create".into(),
            published: None,
            received: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            hint: None,
            listed: None,
        }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let signer = EnvelopeSigner::new(Secret::new("k"));
        let msg = signer.seal(&trigger());
        assert_eq!(msg.group_id, "okta/example.okta.com/00u1");
        assert_eq!(msg.dedupe_id.len(), 64);
        assert_eq!(signer.open(&msg.body), Ok(trigger()));
    }

    #[test]
    fn a_different_key_or_a_tampered_body_is_rejected() {
        let msg = EnvelopeSigner::new(Secret::new("k")).seal(&trigger());
        let other = EnvelopeSigner::new(Secret::new("not-k"));
        assert_eq!(
            other.open(&msg.body),
            Err(EnvelopeError::UnknownKey {
                kid: key_id(&Secret::new("k"))
            }),
            "signed with a key this signer does not hold: worth a fresh read of the keys"
        );
        // The key id is the sender's word: naming a held key with a wrong signature is a plain
        // bad signature, never a reason to wait.
        let mut forged: serde_json::Value = serde_json::from_str(&msg.body).unwrap();
        forged["kid"] = serde_json::json!(key_id(&Secret::new("not-k")));
        assert_eq!(
            other.open(&forged.to_string()),
            Err(EnvelopeError::BadSignature)
        );

        let tampered = msg.body.replace("00u1", "00u2");
        assert_eq!(
            EnvelopeSigner::new(Secret::new("k")).open(&tampered),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn after_a_rotation_the_previous_key_still_opens_what_it_signed() {
        let old = EnvelopeSigner::new(Secret::new("old"));
        let in_flight = old.seal(&trigger());
        let rotated = EnvelopeSigner::new(Secret::new("new")).with_previous(Secret::new("old"));
        assert_eq!(rotated.open(&in_flight.body), Ok(trigger()));
        let fresh = rotated.seal(&trigger());
        assert_eq!(rotated.open(&fresh.body), Ok(trigger()));
        assert_eq!(
            old.open(&fresh.body),
            Err(EnvelopeError::UnknownKey {
                kid: key_id(&Secret::new("new"))
            }),
            "signed with the new key, which a worker that has not read it yet does not hold"
        );
        // Without the previous key, or once it is dropped, the old message no longer opens.
        let done = EnvelopeSigner::new(Secret::new("new")).with_previous(Secret::default());
        assert!(matches!(
            done.open(&in_flight.body),
            Err(EnvelopeError::UnknownKey { .. })
        ));
        // The key id names the key, without revealing it.
        assert!(fresh.body.contains(&key_id(&Secret::new("new"))));
        assert_ne!(key_id(&Secret::new("new")), key_id(&Secret::new("old")));
        assert!(!fresh.body.contains("\"new\""));
    }

    #[test]
    fn a_message_from_before_key_ids_still_opens() {
        let signer = EnvelopeSigner::new(Secret::new("k"));
        let mut sealed: serde_json::Value =
            serde_json::from_str(&signer.seal(&trigger()).body).unwrap();
        sealed.as_object_mut().unwrap().remove("kid");
        assert_eq!(signer.open(&sealed.to_string()), Ok(trigger()));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let signer = EnvelopeSigner::new(Secret::new("k"));
        assert!(matches!(signer.open("{"), Err(EnvelopeError::Malformed(_))));
        assert!(matches!(
            signer.open(r#"{"v":1,"sig":"zz","trigger":"{}"}"#),
            Err(EnvelopeError::BadSignature)
        ));
        assert_eq!(
            signer.open(r#"{"v":9,"sig":"","trigger":""}"#),
            Err(EnvelopeError::Version(9))
        );
    }

    #[test]
    fn dedupe_key_differs_per_user_of_one_event() {
        let a = trigger();
        let mut b = trigger();
        b.subject = Subject::User {
            user_id: "00u2".into(),
        };
        assert_ne!(a.dedupe_key(), b.dedupe_key());
        assert_ne!(a.group_id(), b.group_id());
    }

    #[test]
    fn long_group_ids_are_digested_to_fit_sqs() {
        let mut t = trigger();
        t.tenant = "x".repeat(200);
        assert!(t.group_id().len() <= MAX_SQS_ID);
    }
}
