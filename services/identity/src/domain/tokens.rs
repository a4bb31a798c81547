//! Access tokens (JWT, EdDSA, `kid` for rotation, 15 minutes) and opaque refresh tokens.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tavana_kit::caller::{Role, RoleGrant};

use super::login::LoginCodeKey;

/// Issuer and audience of every access token.
pub const ISSUER: &str = "tavana";
/// The audience of every access token.
pub const AUDIENCE: &str = "tavana";
/// How long an access token is valid, in seconds.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// The JWT algorithm, as `GetSigningKeys` names it.
pub const ALGORITHM_NAME: &str = "EdDSA";

/// A development signing key: used only when the service runs with `dev = true`, never
/// otherwise (`serve` refuses to start without a configured key outside dev).
pub const DEV_PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMitTsmCawBlwOWzIosiYjK477hLy0p09Te3fVPg6yxR
-----END PRIVATE KEY-----
";

/// The `kid` of the development key.
pub const DEV_KID: &str = "dev-1";

/// Claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The employee id.
    pub sub: String,
    /// The employee's national ID.
    pub nid: String,
    /// `employee` and every staff grant, as `role` or `role@REGION`.
    pub roles: Vec<String>,
    /// The session id.
    pub sid: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
    /// The issuer.
    pub iss: String,
    /// The audience (the gateway).
    pub aud: String,
}

/// A public key that verifies access tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id named in a token's header.
    pub kid: String,
    /// The Ed25519 public key, PEM.
    pub pem: String,
}

/// Signs access tokens with the current key, and lists every key still accepted.
#[derive(Clone)]
pub struct TokenSigner {
    kid: String,
    encoding: EncodingKey,
    public_keys: Vec<PublicKey>,
    login_code_key: LoginCodeKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Creates a signer from a PKCS#8 PEM Ed25519 private key; `previous` are public keys
    /// of earlier signing keys, kept so that tokens they signed stay valid while they last.
    pub fn new(kid: &str, private_key_pem: &str, previous: &[PublicKey]) -> anyhow::Result<Self> {
        anyhow::ensure!(!kid.trim().is_empty(), "the signing key id (kid) is empty");
        let signing = SigningKey::from_pkcs8_pem(private_key_pem.trim())
            .context("the JWT private key is not a PKCS#8 PEM Ed25519 key")?;
        let public_pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .context("cannot encode the JWT public key")?;
        let encoding = EncodingKey::from_ed_pem(private_key_pem.trim().as_bytes())
            .context("the JWT private key is not usable")?;
        let mut public_keys = vec![PublicKey {
            kid: kid.to_owned(),
            pem: public_pem,
        }];
        for key in previous {
            ed25519_dalek::VerifyingKey::from_public_key_pem(key.pem.trim()).with_context(
                || format!("previous public key {} is not an Ed25519 PEM", key.kid),
            )?;
            if public_keys.iter().all(|known| known.kid != key.kid) {
                public_keys.push(key.clone());
            }
        }
        Ok(TokenSigner {
            kid: kid.to_owned(),
            encoding,
            public_keys,
            login_code_key: LoginCodeKey::derive_from(&signing.to_bytes()),
        })
    }

    /// Returns the key login codes are derived from, itself derived from the signing key
    /// (so every replica has it and there is no other secret to keep).
    pub fn login_code_key(&self) -> &LoginCodeKey {
        &self.login_code_key
    }

    /// Returns the `kid` of the current key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Returns the current public key first, then the previous ones.
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public_keys
    }

    /// Signs an access token valid for 15 minutes from `now`.
    pub fn sign(
        &self,
        employee_id: &str,
        national_id: &str,
        grants: &[RoleGrant],
        session_id: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: employee_id.to_owned(),
            nid: national_id.to_owned(),
            roles: grants.iter().map(ToString::to_string).collect(),
            sid: session_id.to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp() + ACCESS_TOKEN_SECONDS,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("cannot sign access token")
    }
}

/// Returns the grants an account holder's tokens carry: `employee` first (every account
/// holder is an employee), then the staff grants.
pub fn account_grants(stored: &[RoleGrant]) -> Vec<RoleGrant> {
    let mut grants = vec![RoleGrant::global(Role::Employee)];
    for grant in stored {
        if !grants.contains(grant) {
            grants.push(grant.clone());
        }
    }
    grants
}

/// Draws a new opaque refresh token (32 random bytes, base64url).
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hashes a refresh token for storage (sha256, hex); the token itself is never stored.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    const OTHER_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAT4sRQNDWLacK6PP/MRBTM+i1JAOg7ZdM+l37YVJU1f4=
-----END PUBLIC KEY-----
";

    #[test]
    fn access_token_carries_the_documented_claims_and_verifies_with_the_public_key() {
        let signer = TokenSigner::new(DEV_KID, DEV_PRIVATE_KEY_PEM, &[]).unwrap();
        let now = Utc::now();
        let grants = [
            RoleGrant::global(Role::Employee),
            RoleGrant::regional(Role::RegionFinance, "R01"),
        ];
        let token = signer.sign("E1", "0012345679", &grants, "S1", now).unwrap();

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(DEV_KID));
        assert_eq!(header.alg, Algorithm::EdDSA);
        let key = DecodingKey::from_ed_pem(signer.public_keys()[0].pem.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let claims = jsonwebtoken::decode::<Claims>(&token, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims.sub, "E1");
        assert_eq!(claims.roles, ["employee", "region_finance@R01"]);
        assert_eq!(claims.sid, "S1");
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn previous_keys_are_listed_after_the_current_one() {
        let previous = PublicKey {
            kid: "old".into(),
            pem: OTHER_PUBLIC_PEM.into(),
        };
        let signer = TokenSigner::new("new", DEV_PRIVATE_KEY_PEM, &[previous]).unwrap();
        let kids: Vec<&str> = signer
            .public_keys()
            .iter()
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(kids, ["new", "old"]);
    }

    #[test]
    fn a_bad_key_is_refused() {
        assert!(TokenSigner::new("k", "not a key", &[]).is_err());
        let bad = PublicKey {
            kid: "old".into(),
            pem: "garbage".into(),
        };
        assert!(TokenSigner::new("k", DEV_PRIVATE_KEY_PEM, &[bad]).is_err());
    }

    #[test]
    fn expired_token_is_refused_by_a_verifier() {
        let signer = TokenSigner::new(DEV_KID, DEV_PRIVATE_KEY_PEM, &[]).unwrap();
        let long_ago = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        let token = signer
            .sign("E1", "0012345679", &[], "S1", long_ago)
            .unwrap();
        let key = DecodingKey::from_ed_pem(signer.public_keys()[0].pem.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &validation).is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_ne!(hash_refresh_token(&a), a);
    }
}
