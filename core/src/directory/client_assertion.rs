//! Credentials that are a key, not a shared secret: a JWT signed with the app's private key
//! (RFC 7523 client assertion) proves the relay holds it. Okta's service apps take it
//! as `private_key_jwt` (Okta's recommendation over an SSWS token, which acts as the admin who
//! made it and dies with their account); Entra takes it as a certificate credential, naming the
//! certificate by its SHA-256 thumbprint (`x5t#S256`) and signed PS256, as Microsoft's
//! certificate-credentials page asks (Okta: RS256). The key never leaves the relay; each
//! assertion lives five minutes and is used once.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::signature::{RsaEncoding, RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use serde_json::json;
use sha2::{Digest, Sha256};

/// How long an assertion is valid (Okta and Entra accept up to an hour; less is better).
const ASSERTION_LIFETIME_SECONDS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{setting}: not a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)")]
    NotPem { setting: &'static str },
    #[error("{setting}: the key is not a usable RSA key (2048 bits or more): {reason}")]
    NotRsa {
        setting: &'static str,
        reason: String,
    },
    #[error("{setting}: not a PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NotCertificate { setting: &'static str },
    #[error("signing the client assertion failed")]
    Signing,
}

/// An app's private key, and how the IdP names it.
pub struct ClientKey {
    key_pair: RsaKeyPair,
    /// Okta: the key's id in the app's JWKS (`kid`), when it has several.
    key_id: Option<String>,
    /// Entra: the certificate's SHA-256 thumbprint, base64url.
    thumbprint: Option<String>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("key", &"[redacted]")
            .field("key_id", &self.key_id)
            .field("thumbprint", &self.thumbprint)
            .finish()
    }
}

/// The DER inside a PEM block labelled `label`.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    // Environment variables often carry PEM with `\n` written out.
    let body: String = pem[start..stop]
        .replace("\\n", "\n")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

impl ClientKey {
    /// A PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM; `setting` names it in errors.
    pub fn from_pem(pem: &str, setting: &'static str) -> Result<Self, KeyError> {
        let parsed = if let Some(der) = pem_block(pem, "PRIVATE KEY") {
            RsaKeyPair::from_pkcs8(&der)
        } else if let Some(der) = pem_block(pem, "RSA PRIVATE KEY") {
            RsaKeyPair::from_der(&der)
        } else {
            return Err(KeyError::NotPem { setting });
        };
        let key_pair = parsed.map_err(|e| KeyError::NotRsa {
            setting,
            reason: e.to_string(),
        })?;
        Ok(Self {
            key_pair,
            key_id: None,
            thumbprint: None,
        })
    }

    pub fn with_key_id(mut self, key_id: Option<String>) -> Self {
        self.key_id = key_id.filter(|k| !k.trim().is_empty());
        self
    }

    /// Names the key by its certificate (Entra): the thumbprint of the certificate's DER.
    pub fn with_certificate(mut self, pem: &str, setting: &'static str) -> Result<Self, KeyError> {
        let der = pem_block(pem, "CERTIFICATE").ok_or(KeyError::NotCertificate { setting })?;
        self.thumbprint = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(&der)));
        Ok(self)
    }

    /// The DER of the public key (PKCS#1 `RSAPublicKey`), for whoever checks the signatures.
    pub fn public_key_der(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        self.key_pair.public_key().as_ref().to_vec()
    }

    /// A fresh assertion that `client_id` holds this key, for the token endpoint `audience`.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<String, KeyError> {
        // Entra names a certificate by its SHA-256 thumbprint together with PS256 (RSA-PSS);
        // Okta's private_key_jwt takes RS256.
        let (alg, padding): (&str, &'static dyn RsaEncoding) = match &self.thumbprint {
            Some(_) => ("PS256", &RSA_PSS_SHA256),
            None => ("RS256", &RSA_PKCS1_SHA256),
        };
        let mut header = json!({ "alg": alg, "typ": "JWT" });
        if let Some(kid) = &self.key_id {
            header["kid"] = json!(kid);
        }
        if let Some(thumbprint) = &self.thumbprint {
            header["x5t#S256"] = json!(thumbprint);
        }
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": now.timestamp() + ASSERTION_LIFETIME_SECONDS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                padding,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError::Signing)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    const KEY: &str = include_str!("../../../tests/support/keys/test-client-key.pk8.pem");
    const CERT: &str = include_str!("../../../tests/support/keys/test-client-cert.pem");

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let segment = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    #[test]
    fn an_assertion_is_signed_with_the_key_and_names_the_client_and_the_audience() {
        let key = ClientKey::from_pem(KEY, "okta.private_key")
            .unwrap()
            .with_key_id(Some("kid-1".into()));
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let jwt = key
            .assertion("0oaCLIENT", "https://x.okta.com/oauth2/v1/token", now)
            .unwrap();
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key_der())
            .verify(
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("the signature verifies with the public key");
        assert_eq!(part(&jwt, 0)["alg"], "RS256");
        assert_eq!(part(&jwt, 0)["kid"], "kid-1");
        let claims = part(&jwt, 1);
        assert_eq!(claims["iss"], "0oaCLIENT");
        assert_eq!(claims["sub"], "0oaCLIENT");
        assert_eq!(claims["aud"], "https://x.okta.com/oauth2/v1/token");
        assert_eq!(claims["exp"], 1_800_000_300);
        let again = key.assertion("0oaCLIENT", "aud", now).unwrap();
        assert_ne!(
            part(&again, 1)["jti"],
            claims["jti"],
            "each assertion used once"
        );
        assert!(!format!("{key:?}").contains("BEGIN"), "Debug hides the key");
    }

    #[test]
    fn a_certificate_names_the_key_by_its_thumbprint_and_bad_pem_is_named() {
        let key = ClientKey::from_pem(KEY, "entra.client_private_key")
            .unwrap()
            .with_certificate(CERT, "entra.client_certificate")
            .unwrap();
        let jwt = key
            .assertion("app", "aud", DateTime::from_timestamp(0, 0).unwrap())
            .unwrap();
        let thumbprint = part(&jwt, 0)["x5t#S256"].as_str().unwrap().to_string();
        assert_eq!(URL_SAFE_NO_PAD.decode(&thumbprint).unwrap().len(), 32);
        // Entra's pairing: the SHA-256 thumbprint with PS256, an RSA-PSS signature.
        assert_eq!(part(&jwt, 0)["alg"], "PS256");
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            key.public_key_der(),
        )
        .verify(
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .expect("a PSS signature");
        // A PEM pasted into an environment variable with literal `\n`s still reads.
        let flattened = KEY.replace('\n', "\\n");
        assert!(ClientKey::from_pem(&flattened, "okta.private_key").is_ok());
        assert_eq!(
            ClientKey::from_pem("not a key", "okta.private_key").unwrap_err(),
            KeyError::NotPem {
                setting: "okta.private_key"
            }
        );
        assert!(matches!(
            ClientKey::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
                "okta.private_key"
            ),
            Err(KeyError::NotRsa { .. })
        ));
        assert!(matches!(
            key.with_certificate("nope", "entra.client_certificate"),
            Err(KeyError::NotCertificate { .. })
        ));
    }
}
