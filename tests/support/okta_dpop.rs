//! Okta's DPoP (RFC 9449) as a service app that requires it meets it: the token request must
//! carry a proof (`invalid_dpop_proof` without one), then the nonce the token endpoint hands out
//! (`use_dpop_nonce` with a `DPoP-Nonce` header); the token is bound to the proof's key, and
//! every API call must present it as `DPoP <token>` with a fresh proof by that key naming the
//! call's method and URL, the token's hash and the API's own nonce. A proof seen before is
//! refused.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The access token the fixture issues bound to a key.
pub const OKTA_DPOP_ACCESS_TOKEN: &str = "okta-service-app-dpop-bound-token";
const TOKEN_NONCE: &str = "token-endpoint-nonce-1";
const API_NONCE: &str = "api-nonce-1";

/// Why a proof is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ProofRefusal {
    Missing,
    Invalid(String),
    /// Good, but without the nonce asked for: the answer carries it.
    Nonce(&'static str),
}

#[derive(Debug, Default)]
pub struct DpopServer {
    /// The public key (x, y) the issued token is bound to.
    bound: Option<(String, String)>,
    seen: HashSet<String>,
    /// Proofs accepted on API calls.
    pub api_proofs: usize,
}

fn decode(part: &str) -> Result<Value, ProofRefusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ProofRefusal::Invalid("not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| ProofRefusal::Invalid("not JSON".into()))
}

impl DpopServer {
    /// A proof for `method` `htu`, signed by the key in its header (and by the bound key when
    /// one is), fresh, unseen, with `nonce` and, for an API call, the token's hash. The key.
    fn check(
        &mut self,
        proof: Option<&str>,
        method: &str,
        htu: &str,
        nonce: &'static str,
        token: Option<&str>,
    ) -> Result<(String, String), ProofRefusal> {
        let proof = proof.ok_or(ProofRefusal::Missing)?;
        let mut parts = proof.split('.');
        let (Some(h), Some(c), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ProofRefusal::Invalid("not a JWS".into()));
        };
        let (header, claims) = (decode(h)?, decode(c)?);
        let invalid = |why: &str| Err(ProofRefusal::Invalid(why.to_string()));
        if header["typ"] != "dpop+jwt" || header["alg"] != "ES256" {
            return invalid("typ or alg");
        }
        let jwk = &header["jwk"];
        if jwk["kty"] != "EC" || jwk["crv"] != "P-256" || jwk.get("d").is_some() {
            return invalid("jwk");
        }
        let coordinate = |c: &str| {
            jwk[c]
                .as_str()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .filter(|v| v.len() == 32)
        };
        let (Some(x), Some(y)) = (coordinate("x"), coordinate("y")) else {
            return invalid("jwk coordinates");
        };
        let mut point = vec![4u8];
        point.extend(&x);
        point.extend(&y);
        let signature = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| ProofRefusal::Invalid("signature".into()))?;
        if UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(format!("{h}.{c}").as_bytes(), &signature)
            .is_err()
        {
            return invalid("signature");
        }
        let key = (
            jwk["x"].as_str().unwrap_or_default().to_string(),
            jwk["y"].as_str().unwrap_or_default().to_string(),
        );
        if token.is_some() && self.bound.as_ref() != Some(&key) {
            return invalid("not the key the token is bound to");
        }
        if claims["htm"] != method || claims["htu"] != htu {
            return invalid(&format!("htm/htu {} {}", claims["htm"], claims["htu"]));
        }
        let iat = claims["iat"].as_i64().unwrap_or_default();
        if (chrono::Utc::now().timestamp() - iat).abs() > 60 {
            return invalid("iat");
        }
        if let Some(token) = token {
            let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            if claims["ath"] != ath.as_str() {
                return invalid("ath");
            }
        }
        if claims["nonce"] != nonce {
            return Err(ProofRefusal::Nonce(nonce));
        }
        let jti = claims["jti"].as_str().unwrap_or_default().to_string();
        if jti.is_empty() || !self.seen.insert(jti) {
            return invalid("jti replayed");
        }
        Ok(key)
    }

    /// The token request's proof: its key is the one the token is bound to.
    pub fn token_request(&mut self, proof: Option<&str>, htu: &str) -> Result<(), ProofRefusal> {
        let key = self.check(proof, "POST", htu, TOKEN_NONCE, None)?;
        self.bound = Some(key);
        Ok(())
    }

    /// An API call's `Authorization` and proof.
    pub fn api_call(
        &mut self,
        authorization: Option<&str>,
        proof: Option<&str>,
        method: &str,
        htu: &str,
    ) -> Result<(), ProofRefusal> {
        let token = authorization
            .and_then(|a| a.strip_prefix("DPoP "))
            .filter(|t| *t == OKTA_DPOP_ACCESS_TOKEN)
            .ok_or_else(|| ProofRefusal::Invalid("not a DPoP-bound token".into()))?;
        self.check(proof, method, htu, API_NONCE, Some(token))?;
        self.api_proofs += 1;
        Ok(())
    }
}
