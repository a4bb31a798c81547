//! jsonwebtoken's RustCrypto provider, with each Ed25519 key parsed once per process.
//!
//! Every caller assertion and access token is an EdDSA JWS. The default provider builds
//! its signer from the PKCS#8 key on every signature, which derives the public key again
//! (a scalar multiplication and a field inversion, as much work as the signature itself),
//! and its verifier decompresses the public key on every verification. A balance read
//! spent about a tenth of the machine in Ed25519, a third of it on that repeated work.
//! This provider keeps the parsed keys; the signing and verifying are still
//! `ed25519-dalek`'s, the JWS encoding still jsonwebtoken's, and every other algorithm
//! goes to the default provider.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{LazyLock, RwLock};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, signature};

/// Keys kept at most per kind: a process signs with its own keys and verifies its peers'
/// (two per principal while a key rotates); past it, a key is parsed per use as before.
const MAX_KEYS: usize = 64;

static SIGNING: LazyLock<RwLock<HashMap<Vec<u8>, SigningKey>>> = LazyLock::new(Default::default);
static VERIFYING: LazyLock<RwLock<HashMap<[u8; 32], VerifyingKey>>> =
    LazyLock::new(Default::default);

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
});

/// Makes this provider the process's, before the first token is signed or read (the
/// keyring does it when it is built); later calls return what the first one did. False
/// when another provider was chosen first: tokens are then as valid, only slower.
pub fn install() -> bool {
    static INSTALLED: LazyLock<bool> =
        LazyLock::new(|| LazyLock::force(&PROVIDER).install_default().is_ok());
    *INSTALLED
}

/// Returns the parsed key of `key` from `cache`, parsing and keeping it on a miss.
/// A hit reads the map with the borrowed key, without an allocation.
fn cached<K, Q, V>(
    cache: &RwLock<HashMap<K, V>>,
    key: &Q,
    parse: impl FnOnce() -> Result<V>,
) -> Result<V>
where
    K: Eq + Hash + Borrow<Q>,
    Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
    V: Clone,
{
    if let Some(value) = cache.read().ok().and_then(|map| map.get(key).cloned()) {
        return Ok(value);
    }
    let value = parse()?;
    if let Ok(mut map) = cache.write()
        && map.len() < MAX_KEYS
    {
        map.insert(key.to_owned(), value.clone());
    }
    Ok(value)
}

struct Ed25519Signer(SigningKey);

impl signature::Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(message).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct Ed25519Verifier(VerifyingKey);

impl signature::Verifier<Vec<u8>> for Ed25519Verifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        self.0.verify(message, &Signature::from_slice(signature)?)
    }
}

impl JwtVerifier for Ed25519Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::EdDSA {
        return (rust_crypto::DEFAULT_PROVIDER.signer_factory)(algorithm, key);
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let der = key.as_bytes();
    let signing = cached(&SIGNING, der, || {
        SigningKey::from_pkcs8_der(der).map_err(|_| ErrorKind::InvalidEddsaKey.into())
    })?;
    Ok(Box::new(Ed25519Signer(signing)))
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key);
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let bytes: [u8; 32] = key
        .try_get_as_bytes()?
        .get(..32)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(ErrorKind::InvalidEddsaKey)?;
    let verifying = cached(&VERIFYING, &bytes, || {
        VerifyingKey::from_bytes(&bytes).map_err(|_| ErrorKind::InvalidEddsaKey.into())
    })?;
    Ok(Box::new(Ed25519Verifier(verifying)))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use jsonwebtoken::{Header, Validation};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn key_pair(seed: u8) -> (EncodingKey, DecodingKey, VerifyingKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let private = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (
            EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
            signing.verifying_key(),
        )
    }

    fn sign(key: &EncodingKey, sub: &str) -> String {
        let claims = Claims {
            sub: sub.to_owned(),
            exp: jsonwebtoken::get_current_timestamp() + 60,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, key).unwrap()
    }

    fn read(token: &str, key: &DecodingKey) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, key, &Validation::new(Algorithm::EdDSA))
            .ok()
            .map(|data| data.claims)
    }

    #[test]
    fn tokens_signed_with_parsed_keys_are_ed25519_signatures_of_their_message() {
        assert!(install());
        let (encoding, decoding, verifying) = key_pair(7);

        let first = sign(&encoding, "a");
        let second = sign(&encoding, "b");

        assert_eq!(read(&first, &decoding).unwrap().sub, "a");
        assert_eq!(read(&second, &decoding).unwrap().sub, "b");
        // The signature is the key's over `header.claims`, checked here by ed25519-dalek.
        let (message, signature) = first.rsplit_once('.').unwrap();
        let signature = base64_url(signature);
        verifying
            .verify_strict(
                message.as_bytes(),
                &Signature::from_slice(&signature).unwrap(),
            )
            .unwrap();
    }

    #[test]
    fn another_key_or_a_changed_token_is_refused() {
        assert!(install());
        let (encoding, decoding, _) = key_pair(7);
        let (_, other, _) = key_pair(8);
        let token = sign(&encoding, "a");
        let (_, signature) = token.rsplit_once('.').unwrap();
        let changed = sign(&encoding, "b");
        let (changed_message, _) = changed.rsplit_once('.').unwrap();
        let forged = format!("{changed_message}.{signature}");

        assert!(read(&token, &decoding).is_some());
        assert!(read(&token, &other).is_none(), "another key");
        assert!(read(&forged, &decoding).is_none(), "another message");
    }

    fn base64_url(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap()
    }
}
