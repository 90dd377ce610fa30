//! Signatures on what the service attests (data-request receipts, archive manifests): compact
//! JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037). The keys come from
//! `IBEX_API_SIGNING_KEYS`: the first signs, and every one is published at
//! `GET /.well-known/jwks.json`, so a rotation puts the new key first and keeps the old ones
//! while documents they signed are still checked (docs/domains/data-requests.md).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The service's signing keys, the signing one first.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<(String, SigningKey)>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("SigningKeys").field("kids", &kids).finish()
    }
}

impl SigningKeys {
    /// From 32-byte Ed25519 seeds, the signing one first; at least one.
    pub fn new(seeds: &[[u8; 32]]) -> Self {
        assert!(!seeds.is_empty(), "at least one signing key");
        let keys = seeds
            .iter()
            .map(|seed| {
                let key = SigningKey::from_bytes(seed);
                (kid(&key.verifying_key()), key)
            })
            .collect();
        Self { keys }
    }

    /// A key of this process only, from the operating system's random source: what it signs
    /// verifies only while the process runs (development; a start-up warning says so).
    pub fn ephemeral() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's random source");
        Self::new(&[seed])
    }

    /// `claims` as a compact JWS signed with the first key.
    pub fn sign(&self, claims: &Value) -> String {
        let (kid, key) = &self.keys[0];
        let header = json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let signature = key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64URL.encode(signature.to_bytes()))
    }

    /// The claims of a compact JWS that one of these keys signed (named by its `kid`).
    pub fn verify(&self, jws: &str) -> Option<Value> {
        let mut parts = jws.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let head: Value = serde_json::from_slice(&B64URL.decode(header).ok()?).ok()?;
        if head["alg"] != "EdDSA" {
            return None;
        }
        let (_, key) = self
            .keys
            .iter()
            .find(|(kid, _)| head["kid"] == kid.as_str())?;
        let signature = Signature::from_slice(&B64URL.decode(signature).ok()?).ok()?;
        key.verifying_key()
            .verify(format!("{header}.{claims}").as_bytes(), &signature)
            .ok()?;
        serde_json::from_slice(&B64URL.decode(claims).ok()?).ok()
    }

    /// Every key's public half as a JWK Set (RFC 7517, RFC 8037).
    pub fn jwks(&self) -> JwkSet {
        let keys = self
            .keys
            .iter()
            .map(|(kid, key)| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: B64URL.encode(key.verifying_key().as_bytes()),
                kid: kid.clone(),
                key_use: "sig",
                alg: "EdDSA",
            })
            .collect();
        JwkSet { keys }
    }
}

/// The service's public signing keys (RFC 7517).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: &'static str,
    /// `Ed25519`.
    pub crv: &'static str,
    /// The public key, base64url.
    pub x: String,
    /// The key's RFC 7638 thumbprint; a JWS names its key with it.
    pub kid: String,
    /// `sig`.
    #[serde(rename = "use")]
    #[schema(rename = "use")]
    pub key_use: &'static str,
    /// `EdDSA`.
    pub alg: &'static str,
}

/// The key's RFC 7638 thumbprint: SHA-256 of its required members in lexicographic order.
fn kid(key: &VerifyingKey) -> String {
    let x = B64URL.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_key_signs_verifies_after_a_rotation_and_nothing_else_does() {
        let (old, new) = ([7u8; 32], [9u8; 32]);
        let before = SigningKeys::new(&[old]);
        let receipt = json!({"request_id": "r1", "remaining": 0});
        let jws = before.sign(&receipt);
        assert_eq!(before.verify(&jws), Some(receipt.clone()));

        let after = SigningKeys::new(&[new, old]);
        assert_eq!(
            after.verify(&jws),
            Some(receipt.clone()),
            "old keys still verify"
        );
        assert_eq!(after.jwks().keys.len(), 2);
        assert_ne!(after.sign(&receipt), jws, "the new key signs");

        let mut tampered = jws.clone();
        tampered.replace_range(jws.len() - 2.., "AA");
        assert_eq!(before.verify(&tampered), None);
        let (head, rest) = jws.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", B64URL.encode(r#"{"remaining":1}"#));
        assert_eq!(before.verify(&forged), None);
        assert_eq!(
            SigningKeys::new(&[new]).verify(&jws),
            None,
            "an unknown kid"
        );
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037, appendix A.3: the thumbprint of the example key.
        let x = B64URL
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(kid(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn the_rfc_8037_example_signature_is_reproduced() {
        // RFC 8037, appendix A.4: Ed25519 is deterministic, so the example signs identically.
        let seed = B64URL
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = SigningKey::from_bytes(&seed.try_into().unwrap());
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        assert_eq!(
            B64URL.encode(key.sign(input.as_bytes()).to_bytes()),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }
}
