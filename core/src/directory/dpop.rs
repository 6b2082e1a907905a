//! DPoP (RFC 9449): the access token bound to a key only this process holds, proven on every
//! request, so a token read off a log or a proxy is worth nothing. Okta service apps ask for
//! it ("Require DPoP", on by default for new ones): the token request and each API call then
//! carry a proof, a JWT signed with that key naming the method and URL (and, for an API call,
//! the token's hash). The key is made at start-up (P-256, ES256) and never stored: a new
//! process gets a new token for its new key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::DirectoryError;

/// The key proofs are signed with.
pub struct DpopKey {
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// The public key as the proof's header carries it.
    jwk: serde_json::Value,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jwk", &self.jwk)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, DirectoryError> {
        let rng = SystemRandom::new();
        let failed = || DirectoryError::Permanent("could not make a DPoP key".into());
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| failed())?;
        let key_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .map_err(|_| failed())?;
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = key_pair.public_key().as_ref();
        let (x, y) = point
            .get(1..33)
            .zip(point.get(33..65))
            .ok_or_else(|| DirectoryError::Permanent("unexpected DPoP public key".into()))?;
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        });
        Ok(Self { key_pair, rng, jwk })
    }

    /// A proof for one request: `method` and `url` (its query and fragment left out, as RFC
    /// 9449 asks), the server's nonce when it gave one, and for an API call the access token
    /// it carries (as its hash, `ath`). Each proof has its own `jti`: a server refuses one
    /// seen before.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, DirectoryError> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = json!({
            "htm": method,
            "htu": target_uri(url),
            "iat": now.timestamp(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())));
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key_pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| DirectoryError::Permanent("signing a DPoP proof failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// `url` without its query and fragment.
fn target_uri(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_string(),
    }
}

/// The nonce a server asks proofs to carry (`DPoP-Nonce`), when it answered with one.
pub fn nonce_asked(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn part(jwt: &str, n: usize) -> serde_json::Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(n).expect("part"))
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn a_proof_names_the_request_and_verifies_with_the_key_it_carries() {
        let key = DpopKey::generate().unwrap();
        let now = Utc::now();
        let proof = key
            .proof(
                "GET",
                "https://acme.okta.com/api/v1/users?limit=200#x",
                Some("n-1"),
                Some("token"),
                now,
            )
            .unwrap();
        let header = part(&proof, 0);
        let claims = part(&proof, 1);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "never the private key");
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://acme.okta.com/api/v1/users");
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["iat"], now.timestamp());
        assert_eq!(
            claims["ath"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"token")).as_str()
        );
        // Verifies against the public key in its own header.
        let coordinate = |c: &str| {
            URL_SAFE_NO_PAD
                .decode(header["jwk"][c].as_str().unwrap())
                .unwrap()
        };
        let mut point = vec![4u8];
        point.extend(coordinate("x"));
        point.extend(coordinate("y"));
        let (input, signature) = proof.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("verifies");
        // Each proof is new.
        let again = key
            .proof("GET", "https://acme.okta.com/x", None, None, now)
            .unwrap();
        assert_ne!(part(&again, 1)["jti"], claims["jti"]);
        assert!(part(&again, 1).get("ath").is_none());
        assert!(part(&again, 1).get("nonce").is_none());
    }

    #[test]
    fn the_debug_form_shows_only_the_public_key() {
        let key = DpopKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.contains("P-256") && !shown.contains("\"d\""),
            "{shown}"
        );
    }
}
