//! JWT tokens (`--auth-token jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`), as etcd makes
//! them: claims `username`, `revision` and `exp`, signed with the private key, checked with the
//! public one. A member with only the public key verifies tokens and cannot issue them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// etcd's default JWT lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

pub struct JwtTokens {
    alg: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens").field("alg", &self.alg).field("ttl", &self.ttl).finish()
    }
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IssueError {
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    #[error("auth: {0}")]
    Sign(String),
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("auth: reading the JWT {what} {path}: {e}"))
}

impl JwtTokens {
    /// From `--auth-token`'s options after `jwt` (`name=value` pairs).
    pub fn from_options(opts: &[(String, String)]) -> Result<JwtTokens, String> {
        let get = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
        for (k, _) in opts {
            if !["sign-method", "pub-key", "priv-key", "ttl"].contains(&k.as_str()) {
                tracing::warn!(option = %k, "unknown JWT option");
            }
        }
        let ttl = match get("ttl") {
            Some(t) => oxcd_api::duration::parse(t).map_err(|e| format!("auth: invalid JWT ttl {t:?}: {e}"))?,
            None => DEFAULT_TTL,
        };
        let method = get("sign-method").unwrap_or("");
        let alg = match method {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            "ES512" => return Err("auth: JWT sign-method ES512 is not supported by oxcd (use ES256 or ES384)".into()),
            _ => return Err("auth: invalid auth signature method".into()),
        };
        let private = get("priv-key").map(|p| read(p, "private key")).transpose()?;
        let public = get("pub-key").map(|p| read(p, "public key")).transpose()?;
        let bad = |e: jsonwebtoken::errors::Error| format!("auth: JWT key for {method}: {e}");
        let (encoding, decoding) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or("auth: missing key data")?;
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            _ => {
                let Some(public) = public else {
                    return Err(if private.is_some() {
                        "auth: the JWT public key (pub-key) is needed beside the private key".into()
                    } else {
                        "auth: missing key data".into()
                    });
                };
                let decoding = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&public),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&public),
                    _ => DecodingKey::from_rsa_pem(&public),
                }
                .map_err(bad)?;
                let encoding = private
                    .map(|p| match alg {
                        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&p),
                        Algorithm::EdDSA => EncodingKey::from_ed_pem(&p),
                        _ => EncodingKey::from_rsa_pem(&p),
                    })
                    .transpose()
                    .map_err(bad)?;
                (encoding, decoding)
            }
        };
        let t = JwtTokens { alg, encoding, decoding, ttl };
        // The keys must be a pair: a token signed with one verifies with the other.
        if t.encoding.is_some() {
            let probe = t.issue("probe", 1).map_err(|e| e.to_string())?;
            if t.verify(&probe).is_none() {
                return Err("auth: public and private keys don't match".into());
            }
        }
        Ok(t)
    }

    /// A token for `user` checked at auth revision `revision`.
    pub fn issue(&self, user: &str, revision: u64) -> Result<String, IssueError> {
        let key = self.encoding.as_ref().ok_or(IssueError::VerifyOnly)?;
        let exp = (SystemTime::now() + self.ttl).duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = serde_json::json!({ "username": user, "revision": revision, "exp": exp });
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key).map_err(|e| IssueError::Sign(e.to_string()))
    }

    /// The user and auth revision a valid, unexpired token names.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &self.decoding, &v).ok()?;
        let user = data.claims.get("username")?.as_str()?.to_string();
        let revision = data.claims.get("revision")?.as_f64()? as u64;
        Some((user, revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn hmac_tokens_round_trip_and_bad_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret");
        std::fs::write(&key, b"a secret of some length").unwrap();
        let k = key.to_str().unwrap();
        let t = JwtTokens::from_options(&opts(&[("sign-method", "HS256"), ("priv-key", k)])).unwrap();
        let tok = t.issue("alice", 7).unwrap();
        assert_eq!(t.verify(&tok), Some(("alice".into(), 7)));
        assert_eq!(t.verify("x.y.z"), None);
        let other = dir.path().join("other");
        std::fs::write(&other, b"another secret").unwrap();
        let t2 =
            JwtTokens::from_options(&opts(&[("sign-method", "HS256"), ("priv-key", other.to_str().unwrap())])).unwrap();
        assert_eq!(t2.verify(&tok), None);
        assert_eq!(
            JwtTokens::from_options(&opts(&[("sign-method", "XX1")])).unwrap_err(),
            "auth: invalid auth signature method"
        );
        assert_eq!(JwtTokens::from_options(&opts(&[("sign-method", "RS256")])).unwrap_err(), "auth: missing key data");
        // Expired tokens are refused.
        let short =
            JwtTokens::from_options(&opts(&[("sign-method", "HS256"), ("priv-key", k), ("ttl", "0s")])).unwrap();
        let old = short.issue("alice", 7).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(short.verify(&old), None);
    }

    #[test]
    fn ecdsa_keys_sign_and_verify_and_a_public_key_alone_only_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (priv_path, pub_path) = (dir.path().join("k.pem"), dir.path().join("k.pub"));
        std::fs::write(&priv_path, pair.serialize_pem()).unwrap();
        std::fs::write(&pub_path, pair.public_key_pem()).unwrap();
        let (pr, pb) = (priv_path.to_str().unwrap(), pub_path.to_str().unwrap());
        let t = JwtTokens::from_options(&opts(&[("sign-method", "ES256"), ("priv-key", pr), ("pub-key", pb)])).unwrap();
        let tok = t.issue("bob", 3).unwrap();
        let verify_only = JwtTokens::from_options(&opts(&[("sign-method", "ES256"), ("pub-key", pb)])).unwrap();
        assert_eq!(verify_only.verify(&tok), Some(("bob".into(), 3)));
        assert_eq!(verify_only.issue("bob", 3), Err(IssueError::VerifyOnly));
    }
}
