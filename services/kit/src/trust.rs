//! Trust between services: every `tavana.*` call carries one signed assertion.
//!
//! Each principal (`gateway`, the five services, `cli`) has an Ed25519 key pair. A key
//! directory holds `<principal>.key` (PKCS#8 PEM) for the principals a process runs and
//! `<principal>.pub` (SPKI PEM) for every principal it trusts; more public keys of one
//! principal (`<principal>.next.pub`) may sit beside it, so keys rotate with two valid at
//! once. A key's id (`kid`) is a hash of its public key.
//!
//! The client side ([`Signer`], applied by [`crate::grpc::Dialer`]) takes the plain caller
//! metadata a call site wrote with [`crate::caller::attach`], removes it and adds one compact
//! JWS in [`ASSERTION_KEY`]: issuer = the signing principal, audience = the target service,
//! 60 seconds of validity on the real clock, and the caller's claims. The server side
//! ([`Gate`], applied by [`crate::grpc::serve_grpc`]) drops any plain caller metadata from
//! the wire, verifies the assertion, checks the method's allow-list ([`Policy`]) and writes
//! the verified caller back as plain metadata for the handlers.
//!
//! An assertion is signed with the signer's Ed25519 key (`EdDSA`), or, when the signer
//! trusts exactly one public key of its audience, sealed with a MAC key that only the two
//! of them can derive: X25519 of the signer's key and the audience's (the same key pairs,
//! in their Montgomery form), expanded by HKDF-SHA256 per direction (`HS256`, `kid` =
//! `<signer kid>:<audience kid>`). A signature costs both ends an elliptic-curve operation
//! per call; the MAC costs a hash, the exchange being done once per pair when the keyring is
//! built. During a rotation (two public keys of the audience) calls are signed as before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::future::{BoxFuture, Either, Ready};
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::caller::{Caller, RoleGrant};
use crate::error::{ErrorKind, Problem};

/// The metadata key holding the signed assertion.
pub const ASSERTION_KEY: &str = "x-tavana-assertion";

/// The gateway: the only principal that speaks for users and merchants.
pub const GATEWAY: &str = "gateway";
/// The identity service.
pub const IDENTITY: &str = "identity";
/// The guarantee service.
pub const GUARANTEE: &str = "guarantee";
/// The credit service.
pub const CREDIT: &str = "credit";
/// The settlement service.
pub const SETTLEMENT: &str = "settlement";
/// The merchant directory service.
pub const MERCHANT_DIRECTORY: &str = "merchant-directory";
/// The admin command line.
pub const CLI: &str = "cli";

/// Every principal of the suite.
pub const PRINCIPALS: [&str; 7] = [
    GATEWAY,
    IDENTITY,
    GUARANTEE,
    CREDIT,
    SETTLEMENT,
    MERCHANT_DIRECTORY,
    CLI,
];

/// How long an assertion is valid after it is signed.
pub const ASSERTION_LIFETIME_SECS: u64 = 60;
/// Clock skew tolerated between processes.
const LEEWAY_SECS: u64 = 5;
/// The metadata key of the request id, copied into assertions.
const REQUEST_ID_KEY: &str = "x-request-id";
/// The HKDF salt of the MAC keys between two principals.
const MAC_SALT: &[u8] = b"tavana caller assertion v1";

/// The principals of a `tavana.*` method table: method name → principals allowed.
pub type MethodTable = &'static [(&'static str, &'static [&'static str])];

/// Which principals may call each method of one gRPC service (default deny).
#[derive(Debug)]
pub struct Policy {
    /// The fully qualified service name, e.g. `tavana.credit.v1.CreditService`.
    pub service: &'static str,
    /// The principal this service verifies assertions for (their audience).
    pub audience: &'static str,
    /// Per method name, the principals allowed to call it.
    pub methods: MethodTable,
    /// The methods that only read (or tidy up in transactions of their own, which a
    /// caller that stops waiting rolls back whole): a caller in the same process runs
    /// them in its own task ([`crate::grpc::Transport`]), where every other call gets a
    /// task of its own so that it runs to its end.
    pub reads: &'static [&'static str],
}

impl Policy {
    /// Returns the principals allowed to call `method` (`None` when the table lacks it).
    pub fn allowed(&self, method: &str) -> Option<&'static [&'static str]> {
        self.methods
            .iter()
            .find(|(name, _)| *name == method)
            .map(|(_, principals)| *principals)
    }
}

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Returns the principal a key file name belongs to (`credit.next.pub` → `credit`).
fn principal_of_file(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

struct OwnKey {
    kid: String,
    encoding: EncodingKey,
}

struct TrustedKey {
    principal: String,
    decoding: DecodingKey,
}

/// An own key and a trusted key: the MAC keys of assertions from one to the other.
struct Link {
    /// The `kid` of an assertion from the own key to the trusted one.
    kid: String,
    to_peer: EncodingKey,
    from_peer: DecodingKey,
}

impl Link {
    /// The link of two keys, `None` when the exchange gives no secret (a peer key of small
    /// order): assertions between them are then signed.
    fn new(own: &SigningKey, own_kid: &str, peer: &VerifyingKey, peer_kid: &str) -> Option<Link> {
        let shared = peer
            .to_montgomery()
            .mul_clamped(own.to_scalar_bytes())
            .to_bytes();
        if shared == [0; 32] {
            return None;
        }
        let hkdf = Hkdf::<Sha256>::new(Some(MAC_SALT), &shared);
        let direction = |from: &str, to: &str| {
            let mut key = [0; 32];
            hkdf.expand(format!("{from}:{to}").as_bytes(), &mut key)
                .ok()
                .map(|()| key)
        };
        Some(Link {
            kid: format!("{own_kid}:{peer_kid}"),
            to_peer: EncodingKey::from_secret(&direction(own_kid, peer_kid)?),
            from_peer: DecodingKey::from_secret(&direction(peer_kid, own_kid)?),
        })
    }
}

#[derive(Default)]
struct KeyringInner {
    own: HashMap<String, OwnKey>,
    trusted: HashMap<String, TrustedKey>,
    /// Per own principal, per trusted `kid`, the link of the two keys.
    links: HashMap<String, HashMap<String, Link>>,
    /// The `kid` of each principal with exactly one trusted key: the audiences whose
    /// assertions are sealed with a link rather than signed.
    sole: HashMap<String, String>,
}

/// The private keys of the principals this process runs and the public keys it trusts.
#[derive(Clone, Default)]
pub struct Keyring {
    inner: Arc<KeyringInner>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut own: Vec<&String> = self.inner.own.keys().collect();
        own.sort();
        f.debug_struct("Keyring")
            .field("own", &own)
            .field("trusted_keys", &self.inner.trusted.len())
            .finish()
    }
}

fn check_principal(principal: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        PRINCIPALS.contains(&principal),
        "unknown principal {principal}: one of {}",
        PRINCIPALS.join(", ")
    );
    Ok(())
}

impl Keyring {
    /// Builds a keyring from private keys (PKCS#8 PEM) and trusted public keys (SPKI PEM).
    pub fn from_pems(own: &[(&str, &str)], trusted: &[(&str, &str)]) -> anyhow::Result<Keyring> {
        if !crate::jwt_keys::install() {
            tracing::debug!("another JWT crypto provider was chosen first");
        }
        let mut inner = KeyringInner::default();
        let mut signing_keys = Vec::new();
        for (principal, pem) in own {
            check_principal(principal)?;
            let signing = SigningKey::from_pkcs8_pem(pem.trim()).with_context(|| {
                format!("the key of {principal} is not a PKCS#8 PEM Ed25519 key")
            })?;
            let encoding = EncodingKey::from_ed_pem(pem.trim().as_bytes())
                .with_context(|| format!("the key of {principal} is not usable"))?;
            let kid = key_id(&signing.verifying_key());
            inner.own.insert(
                (*principal).to_owned(),
                OwnKey {
                    kid: kid.clone(),
                    encoding,
                },
            );
            signing_keys.push((*principal, kid, signing));
        }
        let mut verifying_keys = Vec::new();
        for (principal, pem) in trusted {
            check_principal(principal)?;
            let verifying = VerifyingKey::from_public_key_pem(pem.trim()).with_context(|| {
                format!("a public key of {principal} is not an SPKI PEM Ed25519 key")
            })?;
            let decoding = DecodingKey::from_ed_pem(pem.trim().as_bytes())
                .with_context(|| format!("a public key of {principal} is not usable"))?;
            let kid = key_id(&verifying);
            inner.trusted.insert(
                kid.clone(),
                TrustedKey {
                    principal: (*principal).to_owned(),
                    decoding,
                },
            );
            verifying_keys.push((kid, verifying));
        }
        for (principal, own_kid, signing) in &signing_keys {
            let links = inner.links.entry((*principal).to_owned()).or_default();
            for (peer_kid, verifying) in &verifying_keys {
                if let Some(link) = Link::new(signing, own_kid, verifying, peer_kid) {
                    links.insert(peer_kid.clone(), link);
                }
            }
        }
        for principal in PRINCIPALS {
            let mut kids = inner
                .trusted
                .iter()
                .filter(|(_, key)| key.principal == principal)
                .map(|(kid, _)| kid);
            if let (Some(kid), None) = (kids.next(), kids.next()) {
                inner.sole.insert(principal.to_owned(), kid.clone());
            }
        }
        Ok(Keyring {
            inner: Arc::new(inner),
        })
    }

    /// Loads the keyring of a process running `principals` from `dir`: their `<p>.key`
    /// and every `*.pub` (other private keys in the directory are left alone).
    pub fn load(dir: &Path, principals: &[&str]) -> anyhow::Result<Keyring> {
        let mut own = Vec::new();
        for principal in principals {
            check_principal(principal)?;
            let path = dir.join(format!("{principal}.key"));
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the private key {}", path.display()))?;
            own.push(((*principal).to_owned(), pem));
        }
        let mut trusted = Vec::new();
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the key directory {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Kubernetes mounts Secrets through `..data` links: skip hidden entries.
            if name.starts_with('.') || !name.ends_with(".pub") {
                continue;
            }
            let pem = std::fs::read_to_string(entry.path())
                .with_context(|| format!("cannot read the public key {name}"))?;
            trusted.push((principal_of_file(&name).to_owned(), pem));
        }
        anyhow::ensure!(
            !trusted.is_empty(),
            "no public keys (*.pub) in {}",
            dir.display()
        );
        let own: Vec<(&str, &str)> = own.iter().map(|(p, k)| (p.as_str(), k.as_str())).collect();
        let trusted: Vec<(&str, &str)> = trusted
            .iter()
            .map(|(p, k)| (p.as_str(), k.as_str()))
            .collect();
        Keyring::from_pems(&own, &trusted)
    }

    /// Creates the key pairs of `principals` missing from `dir` (`<p>.key` readable by the
    /// owner only, `<p>.pub`), then loads all of them: `tavana up --dev` and test harnesses.
    pub fn generate_dev(dir: &Path, principals: &[&str]) -> anyhow::Result<Keyring> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the key directory {}", dir.display()))?;
        for principal in principals {
            check_principal(principal)?;
            if !dir.join(format!("{principal}.key")).exists() {
                write_key_pair(dir, principal)?;
            }
        }
        Keyring::load(dir, principals)
    }

    /// A keyring of fresh in-memory keys for `principals`, trusting exactly those keys.
    pub fn ephemeral(principals: &[&str]) -> anyhow::Result<Keyring> {
        let pairs = principals
            .iter()
            .map(|principal| {
                let (private, public) = new_key_pair()?;
                Ok(((*principal).to_owned(), private, public))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let own: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(p, private, _)| (p.as_str(), private.as_str()))
            .collect();
        let trusted: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(p, _, public)| (p.as_str(), public.as_str()))
            .collect();
        Keyring::from_pems(&own, &trusted)
    }

    /// Returns the link that seals assertions of `own` for `audience`: `None` unless this
    /// keyring trusts exactly one key of the audience.
    fn link(&self, own: &str, audience: &str) -> Option<&Link> {
        let kid = self.inner.sole.get(audience)?;
        self.inner.links.get(own)?.get(kid)
    }

    /// Returns true when this process holds the private key of `principal`.
    pub fn holds(&self, principal: &str) -> bool {
        self.inner.own.contains_key(principal)
    }

    /// Returns a signer for `principal`, whose service callers must be `principal` itself.
    pub fn signer(&self, principal: &str) -> anyhow::Result<Signer> {
        anyhow::ensure!(
            self.holds(principal),
            "no private key for principal {principal}"
        );
        Ok(Signer {
            keyring: self.clone(),
            principal: principal.to_owned(),
            any_service: false,
        })
    }

    /// Returns a signer that speaks for users as `principal` (normally `gateway`) and signs
    /// each service caller with that service's own key: for processes that run the whole
    /// suite (`tavana up`, its demo loader, tests, the bench), which hold every key.
    pub fn suite_signer(&self, principal: &str) -> anyhow::Result<Signer> {
        let mut signer = self.signer(principal)?;
        signer.any_service = true;
        Ok(signer)
    }

    /// Verifies an assertion addressed to `audience`; returns its issuer and caller.
    pub fn verify(&self, token: &str, audience: &str) -> Result<(String, Caller), Problem> {
        self.verify_claims(token, audience)
            .map(|(issuer, caller, _)| (issuer, caller))
    }

    /// Verifies `token` as [`Keyring::verify`] does and also returns the request id the
    /// signer put in it (`rid`, empty when none).
    fn verify_claims(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<(String, Caller, String), Problem> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let trusted = |kid: &str| {
            self.inner
                .trusted
                .get(kid)
                .ok_or_else(|| invalid("unknown key"))
        };
        // The key id alone chooses the algorithm: a header never turns a public key into a
        // MAC secret.
        let (principal, decoding, algorithm) = match kid.split_once(':') {
            Some((sender, receiver)) => {
                let key = trusted(sender)?;
                let link = self
                    .inner
                    .own
                    .get(audience)
                    .filter(|own| own.kid == receiver)
                    .and_then(|_| self.inner.links.get(audience)?.get(sender))
                    .ok_or_else(|| invalid("sealed for another key"))?;
                (&key.principal, &link.from_peer, Algorithm::HS256)
            }
            None => {
                let key = trusted(&kid)?;
                (&key.principal, &key.decoding, Algorithm::EdDSA)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[principal.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
        let claims = jsonwebtoken::decode::<Claims>(token, decoding, &validation)
            .map_err(|error| invalid(&error.to_string()))?
            .claims;
        let caller = claims
            .caller()
            .ok_or_else(|| invalid("unknown caller kind"))?;
        match &caller {
            Caller::Service { name } if *name != claims.iss => {
                return Err(invalid("a service speaks only for itself"));
            }
            Caller::Service { .. } => {}
            _ if claims.iss != GATEWAY => {
                return Err(invalid("only the gateway speaks for users and merchants"));
            }
            _ => {}
        }
        Ok((claims.iss, caller, claims.rid))
    }
}

fn new_key_pair() -> anyhow::Result<(String, String)> {
    let secret: [u8; 32] = rand::random();
    let signing = SigningKey::from_bytes(&secret);
    let private = signing
        .to_pkcs8_pem(LineEnding::LF)
        .context("cannot encode a private key")?
        .to_string();
    let public = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("cannot encode a public key")?;
    Ok((private, public))
}

/// Writes a new key pair of `principal` into `dir`: `<p>.key` (mode 0600) and `<p>.pub`,
/// replacing any there.
pub fn write_key_pair(dir: &Path, principal: &str) -> anyhow::Result<()> {
    check_principal(principal)?;
    let (private, public) = new_key_pair()?;
    let key_path = dir.join(format!("{principal}.key"));
    write_private(&key_path, &private)?;
    std::fs::write(dir.join(format!("{principal}.pub")), public)
        .with_context(|| format!("cannot write the public key of {principal}"))?;
    Ok(())
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}

fn invalid(reason: &str) -> Problem {
    tracing::debug!(reason, "caller assertion refused");
    Problem::new(
        ErrorKind::Unauthenticated,
        "caller_assertion_invalid",
        "The caller's credential is missing or invalid.",
        "اعتبارنامهٔ فراخوان وجود ندارد یا نامعتبر است.",
    )
}

fn not_allowed() -> Problem {
    // The same answer as a handler's refusal: a client cannot tell the two apart.
    Problem::permission_denied()
}

/// The claims of an assertion.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    /// The caller kind: `anonymous`, `user`, `merchant` or `service`.
    knd: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sub: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    nid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    rid: String,
}

impl Claims {
    fn caller(&self) -> Option<Caller> {
        let id = self.sub.clone();
        match self.knd.as_str() {
            "anonymous" => Some(Caller::Anonymous),
            "user" if !id.is_empty() => Some(Caller::User {
                employee_id: id,
                national_id: self.nid.clone(),
                grants: self
                    .roles
                    .iter()
                    .filter_map(|role| RoleGrant::parse(role))
                    .collect(),
            }),
            "merchant" if !id.is_empty() => Some(Caller::Merchant { merchant_id: id }),
            "service" if !id.is_empty() => Some(Caller::Service { name: id }),
            _ => None,
        }
    }
}

/// Signs assertions as one principal.
#[derive(Clone)]
pub struct Signer {
    keyring: Keyring,
    principal: String,
    any_service: bool,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("principal", &self.principal)
            .field("any_service", &self.any_service)
            .finish()
    }
}

impl Signer {
    /// Returns the principal this signer speaks as for users.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Returns the principal that signs for `caller`.
    fn issuer_for<'a>(&'a self, caller: &'a Caller) -> Result<&'a str, Problem> {
        match caller {
            Caller::Service { name } if *name == self.principal => Ok(name),
            Caller::Service { name } if self.any_service && self.keyring.holds(name) => Ok(name),
            Caller::Service { name } => Err(Problem::new(
                ErrorKind::Internal,
                "caller_not_signable",
                format!("{} cannot speak for service {name}", self.principal),
                "فراخوان قابل امضا نیست.",
            )),
            _ => Ok(&self.principal),
        }
    }

    /// Signs an assertion of `caller` for `audience`, valid for 60 seconds from now.
    pub fn assertion(
        &self,
        caller: &Caller,
        audience: &str,
        request_id: Option<&str>,
    ) -> Result<String, Problem> {
        self.assertion_at(caller, audience, request_id, now_secs())
    }

    /// Signs an assertion issued at `issued_at` (Unix seconds on the real clock).
    pub fn assertion_at(
        &self,
        caller: &Caller,
        audience: &str,
        request_id: Option<&str>,
        issued_at: u64,
    ) -> Result<String, Problem> {
        let issuer = self.issuer_for(caller)?;
        let key = self
            .keyring
            .inner
            .own
            .get(issuer)
            .ok_or_else(|| Problem::internal(format!("no private key for {issuer}")))?;
        let (knd, sub) = match caller {
            Caller::Anonymous => ("anonymous", String::new()),
            Caller::User { employee_id, .. } => ("user", employee_id.clone()),
            Caller::Merchant { merchant_id } => ("merchant", merchant_id.clone()),
            Caller::Service { name } => ("service", name.clone()),
        };
        let claims = Claims {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            iat: issued_at,
            nbf: issued_at,
            exp: issued_at + ASSERTION_LIFETIME_SECS,
            knd: knd.to_owned(),
            sub,
            nid: caller.national_id().unwrap_or_default().to_owned(),
            roles: caller.grants().iter().map(ToString::to_string).collect(),
            rid: request_id.unwrap_or_default().to_owned(),
        };
        let (algorithm, kid, encoding) = match self.keyring.link(issuer, audience) {
            Some(link) => (Algorithm::HS256, &link.kid, &link.to_peer),
            None => (Algorithm::EdDSA, &key.kid, &key.encoding),
        };
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, encoding).map_err(Problem::internal)
    }

    /// Replaces the plain caller metadata of a call to `path` with a signed assertion.
    fn sign_headers(&self, path: &str, headers: &mut http::HeaderMap) -> Result<(), Problem> {
        let mut metadata = MetadataMap::from_headers(std::mem::take(headers));
        let caller = Caller::from_metadata(&metadata);
        Caller::Anonymous.write_metadata(&mut metadata);
        metadata.remove(ASSERTION_KEY);
        if let Some(audience) = audience_of_path(path) {
            let request_id = metadata
                .get(REQUEST_ID_KEY)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let token = self.assertion(&caller, &audience, request_id.as_deref())?;
            let value = MetadataValue::try_from(token.as_str()).map_err(Problem::internal)?;
            metadata.insert(ASSERTION_KEY, value);
        }
        *headers = metadata.into_headers();
        Ok(())
    }
}

/// The principal that serves a gRPC path: `/tavana.merchant_directory.v1.X/Y` →
/// `merchant-directory`; `None` outside `tavana.*`.
pub fn audience_of_path(path: &str) -> Option<String> {
    let package = path.strip_prefix("/tavana.")?.split('.').next()?;
    (!package.is_empty()).then(|| package.replace('_', "-"))
}

/// A client channel that signs every `tavana.*` call (see [`Signer`]).
#[derive(Clone)]
pub struct Signed<S> {
    inner: S,
    signer: Signer,
}

impl<S> Signed<S> {
    /// Wraps `inner` so that its calls are signed by `signer`.
    pub fn new(inner: S, signer: Signer) -> Signed<S> {
        Signed { inner, signer }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for Signed<S>
where
    S: tower::Service<http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if let Err(problem) = self.signer.sign_headers(&path, request.headers_mut()) {
            let status = Status::from(problem);
            return Box::pin(futures::future::ready(Err(Box::new(status) as BoxError)));
        }
        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// The server side: verifies assertions and allow-lists before any `tavana.*` handler.
#[derive(Clone)]
pub struct Gate {
    keyring: Keyring,
    policies: Vec<&'static Policy>,
}

impl Gate {
    /// A gate for the service of `policy` (one per port), verifying with `keyring`.
    pub fn new(keyring: Keyring, policy: &'static Policy) -> Gate {
        Gate {
            keyring,
            policies: vec![policy],
        }
    }

    /// The gate guarding one more service served on the same port (e.g. the audit trail).
    pub fn and(mut self, policy: &'static Policy) -> Gate {
        self.policies.push(policy);
        self
    }

    /// Returns the paths (`/service/method`) of the methods that only read.
    pub fn read_paths(&self) -> std::collections::HashSet<String> {
        self.policies
            .iter()
            .flat_map(|policy| {
                policy
                    .reads
                    .iter()
                    .map(|method| format!("/{}/{method}", policy.service))
            })
            .collect()
    }

    /// Returns the names of the services this gate guards.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.policies.iter().map(|policy| policy.service).collect()
    }

    /// Admits a call to `path`: strips unsigned caller metadata, verifies the assertion
    /// and the allow-list, and writes the verified caller back as plain metadata.
    pub fn admit(&self, path: &str, headers: &mut http::HeaderMap) -> Result<(), Problem> {
        let mut metadata = MetadataMap::from_headers(std::mem::take(headers));
        let token = metadata
            .remove(ASSERTION_KEY)
            .and_then(|value| value.to_str().ok().map(str::to_owned));
        Caller::Anonymous.write_metadata(&mut metadata);
        let result = self.check(path, token.as_deref());
        // The request id the audit trail records (R32) is the one the signer vouched
        // for, never an unsigned `x-request-id` beside the assertion.
        metadata.remove(REQUEST_ID_KEY);
        if let Ok((caller, request_id)) = &result {
            caller.write_metadata(&mut metadata);
            if let Ok(value) = MetadataValue::try_from(request_id.as_str())
                && !request_id.is_empty()
            {
                metadata.insert(REQUEST_ID_KEY, value);
            }
        }
        *headers = metadata.into_headers();
        result.map(|_| ())
    }

    /// Returns the verified caller of a call to `path` and the request id of its
    /// assertion.
    fn check(&self, path: &str, token: Option<&str>) -> Result<(Caller, String), Problem> {
        let Some((service, method)) = path.strip_prefix('/').and_then(|path| path.split_once('/'))
        else {
            return Err(not_allowed());
        };
        let policy = self
            .policies
            .iter()
            .copied()
            .find(|policy| policy.service == service);
        let token = token.ok_or_else(|| invalid("no assertion"))?;
        // An unknown service still needs a valid credential before it is told anything.
        let audience = policy.map(|policy| policy.audience).unwrap_or_default();
        let (issuer, caller, request_id) = self.keyring.verify_claims(token, audience)?;
        let allowed = policy
            .and_then(|policy| policy.allowed(method))
            .unwrap_or_default();
        if !allowed.contains(&issuer.as_str()) {
            tracing::warn!(issuer, path, "caller not on the method's allow-list");
            return Err(not_allowed());
        }
        Ok((caller, request_id))
    }
}

/// A tower layer applying a [`Gate`] to every `tavana.*` path.
#[derive(Clone)]
pub struct GateLayer {
    gate: Gate,
}

impl GateLayer {
    /// The layer of `gate`.
    pub fn new(gate: Gate) -> GateLayer {
        GateLayer { gate }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// A service behind a [`Gate`].
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: Gate,
}

impl<S, B, R> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if path.starts_with("/tavana.") {
            if let Err(problem) = self.gate.admit(&path, request.headers_mut()) {
                let response = Status::from(problem).into_http::<R>();
                return Either::Left(futures::future::ready(Ok(response)));
            }
        } else {
            // Health and reflection take no caller: never pass one through unverified.
            let mut metadata = MetadataMap::from_headers(std::mem::take(request.headers_mut()));
            Caller::Anonymous.write_metadata(&mut metadata);
            *request.headers_mut() = metadata.into_headers();
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::{self, Role};

    const POLICY: Policy = Policy {
        service: "tavana.credit.v1.CreditService",
        audience: CREDIT,
        methods: &[("OpenFacility", &[GUARANTEE]), ("GetBalance", &[GATEWAY])],
        reads: &["GetBalance"],
    };

    fn keyring() -> Keyring {
        Keyring::ephemeral(&PRINCIPALS).unwrap()
    }

    fn user() -> Caller {
        Caller::User {
            employee_id: "E1".into(),
            national_id: "0012345679".into(),
            grants: vec![
                RoleGrant::global(Role::Employee),
                RoleGrant::regional(Role::RegionFinance, "R01"),
            ],
        }
    }

    fn headers_with(token: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(ASSERTION_KEY, token.parse().unwrap());
        headers
    }

    #[test]
    fn a_user_assertion_from_the_gateway_round_trips() {
        let keyring = keyring();
        let token = keyring
            .signer(GATEWAY)
            .unwrap()
            .assertion(&user(), CREDIT, Some("req-1"))
            .unwrap();

        let (issuer, caller) = keyring.verify(&token, CREDIT).unwrap();

        assert_eq!(issuer, GATEWAY);
        assert_eq!(caller, user());
    }

    #[test]
    fn a_wrong_audience_an_expired_or_future_assertion_is_refused() {
        let keyring = keyring();
        let signer = keyring.signer(GATEWAY).unwrap();
        let wrong_audience = signer.assertion(&user(), IDENTITY, None).unwrap();
        let expired = signer
            .assertion_at(&user(), CREDIT, None, now_secs() - 3_600)
            .unwrap();
        let future = signer
            .assertion_at(&user(), CREDIT, None, now_secs() + 3_600)
            .unwrap();

        for token in [wrong_audience, expired, future, "not.a.jws".to_owned()] {
            let error = keyring.verify(&token, CREDIT).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Unauthenticated, "{token}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused_even_for_a_known_principal_name() {
        let stranger = keyring().signer(GATEWAY).unwrap();
        let token = stranger.assertion(&user(), CREDIT, None).unwrap();

        let error = keyring().verify(&token, CREDIT).unwrap_err();

        assert_eq!(error.code, "caller_assertion_invalid");
    }

    #[test]
    fn only_the_gateway_speaks_for_users_and_a_service_only_for_itself() {
        let keyring = keyring();
        let as_credit = keyring.suite_signer(GUARANTEE).unwrap();
        // A suite signer signs a service caller with that service's key...
        let token = as_credit
            .assertion(&Caller::service(CREDIT), CREDIT, None)
            .unwrap();
        assert_eq!(keyring.verify(&token, CREDIT).unwrap().0, CREDIT);
        // ...but a user caller is signed as the signer's own principal, not the gateway.
        let token = as_credit.assertion(&user(), CREDIT, None).unwrap();
        assert!(keyring.verify(&token, CREDIT).is_err());
        // A strict signer cannot speak for another service at all.
        let strict = keyring.signer(GUARANTEE).unwrap();
        assert!(
            strict
                .assertion(&Caller::service(CREDIT), CREDIT, None)
                .is_err()
        );
    }

    #[test]
    fn the_gate_strips_forged_metadata_and_checks_the_allow_list() {
        let keyring = keyring();
        let gate = Gate::new(keyring.clone(), &POLICY);
        let path = "/tavana.credit.v1.CreditService/OpenFacility";

        let mut forged = http::HeaderMap::new();
        forged.insert(caller::KIND_KEY, "service".parse().unwrap());
        forged.insert(caller::ID_KEY, "guarantee".parse().unwrap());
        let error = gate.admit(path, &mut forged).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unauthenticated);
        assert!(forged.get(caller::KIND_KEY).is_none());

        let from_gateway = keyring
            .signer(GATEWAY)
            .unwrap()
            .assertion(&user(), CREDIT, None)
            .unwrap();
        let error = gate
            .admit(path, &mut headers_with(&from_gateway))
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::PermissionDenied);

        let from_guarantee = keyring
            .signer(GUARANTEE)
            .unwrap()
            .assertion(&Caller::service(GUARANTEE), CREDIT, None)
            .unwrap();
        let mut headers = headers_with(&from_guarantee);
        gate.admit(path, &mut headers).unwrap();
        assert_eq!(
            Caller::from_metadata(&MetadataMap::from_headers(headers)),
            Caller::service(GUARANTEE)
        );

        // A method missing from the table is refused (default deny).
        let error = gate
            .admit(
                "/tavana.credit.v1.CreditService/Unlisted",
                &mut headers_with(&from_guarantee),
            )
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::PermissionDenied);
    }

    #[test]
    fn r32_the_gate_passes_on_the_request_id_of_the_assertion_not_an_unsigned_one() {
        let keyring = keyring();
        let gate = Gate::new(keyring.clone(), &POLICY);
        let path = "/tavana.credit.v1.CreditService/GetBalance";
        let signer = keyring.signer(GATEWAY).unwrap();
        let signed = signer
            .assertion(&user(), CREDIT, Some("req-signed"))
            .unwrap();
        let without_rid = signer.assertion(&user(), CREDIT, None).unwrap();

        let mut headers = headers_with(&signed);
        headers.insert(REQUEST_ID_KEY, "req-forged".parse().unwrap());
        gate.admit(path, &mut headers).unwrap();
        let mut bare = headers_with(&without_rid);
        bare.insert(REQUEST_ID_KEY, "req-forged".parse().unwrap());
        gate.admit(path, &mut bare).unwrap();

        assert_eq!(headers[REQUEST_ID_KEY], "req-signed");
        assert!(bare.get(REQUEST_ID_KEY).is_none());
    }

    #[test]
    fn the_signer_replaces_plain_metadata_with_one_assertion() {
        let keyring = keyring();
        let signer = keyring.signer(GATEWAY).unwrap();
        let mut metadata = MetadataMap::new();
        user().write_metadata(&mut metadata);
        let mut headers = metadata.into_headers();

        signer
            .sign_headers("/tavana.credit.v1.CreditService/GetBalance", &mut headers)
            .unwrap();

        assert!(headers.get(caller::KIND_KEY).is_none());
        let token = headers.get(ASSERTION_KEY).unwrap().to_str().unwrap();
        assert_eq!(keyring.verify(token, CREDIT).unwrap().1, user());
    }

    /// A rotation of credit's key: its old public key stays trusted as `credit.old.pub`
    /// while a new pair takes over.
    fn rotate_credit_key(dir: &Path) {
        std::fs::rename(dir.join("credit.pub"), dir.join("credit.old.pub")).unwrap();
        write_key_pair(dir, CREDIT).unwrap();
    }

    #[test]
    fn keys_load_from_a_directory_with_two_public_keys_of_one_principal() {
        let dir = tempfile::tempdir().unwrap();
        let old = Keyring::generate_dev(dir.path(), &[CREDIT]).unwrap();
        let old_token = old
            .signer(CREDIT)
            .unwrap()
            .assertion(&Caller::service(CREDIT), SETTLEMENT, None)
            .unwrap();
        rotate_credit_key(dir.path());

        let rotated = Keyring::load(dir.path(), &[CREDIT]).unwrap();
        let new_token = rotated
            .signer(CREDIT)
            .unwrap()
            .assertion(&Caller::service(CREDIT), SETTLEMENT, None)
            .unwrap();

        assert!(rotated.verify(&old_token, SETTLEMENT).is_ok());
        assert!(rotated.verify(&new_token, SETTLEMENT).is_ok());
        assert!(!rotated.holds(GATEWAY));
        assert!(Keyring::load(dir.path(), &[GATEWAY]).is_err());
    }

    /// An assertion of `caller` for `audience` made by `keyring` as `principal`.
    fn assertion_of(
        keyring: &Keyring,
        principal: &str,
        caller: &Caller,
        audience: &str,
        request_id: Option<&str>,
    ) -> String {
        keyring
            .signer(principal)
            .unwrap()
            .assertion(caller, audience, request_id)
            .unwrap()
    }

    /// A directory with every principal's key pair, and a keyring per process of `split`.
    fn split_keyrings<const N: usize>(dir: &Path, split: [&str; N]) -> [Keyring; N] {
        Keyring::generate_dev(dir, &PRINCIPALS).unwrap();
        split.map(|principal| Keyring::load(dir, &[principal]).unwrap())
    }

    fn own_kid(keyring: &Keyring, principal: &str) -> String {
        keyring.inner.own[principal].kid.clone()
    }

    fn user_claims(issuer: &str, audience: &str) -> Claims {
        let now = now_secs();
        Claims {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ASSERTION_LIFETIME_SECS,
            knd: "user".to_owned(),
            sub: "E1".to_owned(),
            nid: String::new(),
            roles: vec!["support".to_owned()],
            rid: String::new(),
        }
    }

    fn encode_with(kid: &str, algorithm: Algorithm, claims: &Claims, key: &EncodingKey) -> String {
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[test]
    fn an_assertion_to_an_audience_with_one_key_is_sealed_by_their_pair_and_opened_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let [gateway, credit, settlement] =
            split_keyrings(dir.path(), [GATEWAY, CREDIT, SETTLEMENT]);

        let from_gateway = assertion_of(&gateway, GATEWAY, &user(), CREDIT, Some("req-1"));
        let from_credit = assertion_of(&credit, CREDIT, &Caller::service(CREDIT), SETTLEMENT, None);

        let header = jsonwebtoken::decode_header(&from_gateway).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(
            header.kid.unwrap(),
            format!(
                "{}:{}",
                own_kid(&gateway, GATEWAY),
                own_kid(&credit, CREDIT)
            )
        );
        // Each end derives the pair's keys from its own private key alone.
        assert_eq!(
            credit.verify_claims(&from_gateway, CREDIT).unwrap(),
            (GATEWAY.to_owned(), user(), "req-1".to_owned())
        );
        assert_eq!(
            settlement.verify(&from_credit, SETTLEMENT).unwrap(),
            (CREDIT.to_owned(), Caller::service(CREDIT))
        );
        // Only the audience holds the other half of the pair.
        for token in [&from_gateway, &from_credit] {
            assert!(gateway.verify(token, CREDIT).is_err());
            assert!(gateway.verify(token, SETTLEMENT).is_err());
        }
        assert!(settlement.verify(&from_gateway, SETTLEMENT).is_err());
        assert!(credit.verify(&from_credit, CREDIT).is_err());
    }

    #[test]
    fn a_sealed_assertion_changed_relabelled_or_of_another_algorithm_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let [gateway, credit, settlement] =
            split_keyrings(dir.path(), [GATEWAY, CREDIT, SETTLEMENT]);
        let sealed = assertion_of(&gateway, GATEWAY, &user(), CREDIT, None);
        let (gateway_kid, credit_kid, settlement_kid) = (
            own_kid(&gateway, GATEWAY),
            own_kid(&credit, CREDIT),
            own_kid(&settlement, SETTLEMENT),
        );
        // Settlement's own link to credit, sealing a user caller as if from the gateway.
        let settlement_link = settlement.link(SETTLEMENT, CREDIT).unwrap();
        let claims = user_claims(GATEWAY, CREDIT);
        let gateway_public = std::fs::read_to_string(dir.path().join("gateway.pub")).unwrap();

        let mut changed = sealed.clone().into_bytes();
        let middle = changed.len() / 2;
        changed[middle] = if changed[middle] == b'A' { b'B' } else { b'A' };
        let forged = [
            String::from_utf8(changed).unwrap(),
            // The claim names the gateway, the key is settlement's.
            encode_with(
                &settlement_link.kid,
                Algorithm::HS256,
                &claims,
                &settlement_link.to_peer,
            ),
            // The key id names the gateway, the MAC is settlement's.
            encode_with(
                &format!("{gateway_kid}:{credit_kid}"),
                Algorithm::HS256,
                &claims,
                &settlement_link.to_peer,
            ),
            // A sealed key id with a signature's algorithm.
            encode_with(
                &format!("{settlement_kid}:{credit_kid}"),
                Algorithm::EdDSA,
                &user_claims(SETTLEMENT, CREDIT),
                &EncodingKey::from_ed_pem(
                    std::fs::read(dir.path().join("settlement.key"))
                        .unwrap()
                        .as_slice(),
                )
                .unwrap(),
            ),
            // A signature's key id with a MAC keyed by the public key, which anyone has.
            encode_with(
                &gateway_kid,
                Algorithm::HS256,
                &claims,
                &EncodingKey::from_secret(gateway_public.as_bytes()),
            ),
        ];

        assert!(credit.verify(&sealed, CREDIT).is_ok());
        for token in forged {
            let error = credit.verify(&token, CREDIT).unwrap_err();
            assert_eq!(error.code, "caller_assertion_invalid", "{token}");
        }
    }

    #[test]
    fn while_the_audience_rotates_its_key_assertions_are_signed_and_a_stale_seal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let [before] = split_keyrings(dir.path(), [GATEWAY]);
        let sealed_for_the_old_key = assertion_of(&before, GATEWAY, &user(), CREDIT, None);
        rotate_credit_key(dir.path());
        let gateway = Keyring::load(dir.path(), &[GATEWAY]).unwrap();
        let credit = Keyring::load(dir.path(), &[CREDIT]).unwrap();

        let signed = assertion_of(&gateway, GATEWAY, &user(), CREDIT, None);

        assert_eq!(
            jsonwebtoken::decode_header(&signed).unwrap().alg,
            Algorithm::EdDSA
        );
        assert_eq!(credit.verify(&signed, CREDIT).unwrap().1, user());
        let error = credit.verify(&sealed_for_the_old_key, CREDIT).unwrap_err();
        assert_eq!(error.code, "caller_assertion_invalid");
    }

    #[test]
    fn the_audience_comes_from_the_package() {
        assert_eq!(
            audience_of_path("/tavana.merchant_directory.v1.MerchantDirectoryService/GetMerchant")
                .as_deref(),
            Some(MERCHANT_DIRECTORY)
        );
        assert_eq!(audience_of_path("/grpc.health.v1.Health/Check"), None);
    }
}
