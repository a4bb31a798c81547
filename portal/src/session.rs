//! Server-side sessions: the browser holds only a random session id in an
//! HttpOnly cookie; the access and refresh tokens, the CSRF token and the
//! pending login challenge stay on the server, in the shared store (Redis in
//! split mode and Kubernetes, in-process under `tavana up`), so that any
//! gateway replica serves any user.
//!
//! A request works on this process's copy: [`Sessions::open`] loads the
//! session from the store when the request starts, handlers read and change
//! the copy, and [`Sessions::save`] writes it back before the answer leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tavana_kit::store::{KvStore, MemoryStore};

use crate::i18n::Lang;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "tavana_portal";

/// How long a signed-in session lives without a request.
const SIGNED_IN_IDLE: Duration = Duration::from_secs(8 * 3600);
/// How long a session that never signed in lives without a request.
const ANONYMOUS_IDLE: Duration = Duration::from_secs(3600);

/// The gateway's tokens of a signed-in session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tokens {
    /// Sent as `Authorization: Bearer` to the gateway.
    pub access: String,
    /// Exchanged at `/v1/auth/refresh` when the access token expires.
    pub refresh: String,
    /// When the access token is due to expire (with a margin).
    pub access_expires: SystemTime,
}

/// One role of the signed-in user, as `/v1/me` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// `employee`, `region_finance`, `support`, …
    pub name: String,
    /// The region of a regional role.
    pub region: Option<String>,
}

/// Who is signed in, from `/v1/me`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Me {
    /// The name HR has.
    pub full_name: String,
    /// Ten digits.
    pub national_id: String,
    /// The employee's own region.
    pub region_code: String,
    /// Roles that decide which menu items and pages are open.
    pub roles: Vec<Role>,
}

impl Me {
    /// Tells whether the user holds `role` (in any region).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held.name == role)
    }

    /// Returns the region of a regional role, falling back to the
    /// employee's own region.
    pub fn region_of(&self, role: &str) -> Option<String> {
        let held = self.roles.iter().find(|held| held.name == role)?;
        Some(
            held.region
                .clone()
                .unwrap_or_else(|| self.region_code.clone()),
        )
    }
}

/// A message shown once on the next page.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flash {
    /// Success (true) or error (false).
    pub ok: bool,
    /// The main sentence.
    pub text: String,
    /// Details, such as one line per failed rule.
    pub details: Vec<String>,
}

/// A login code that was asked for and not used yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Challenge {
    /// From `/v1/auth/login-code`.
    pub id: String,
    /// The mobile the code was sent to, shown (masked) on the code form.
    pub mobile: String,
}

/// One browser's session.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    /// The synchronizer token every form carries.
    pub csrf: String,
    /// The language chosen with `?lang=`.
    pub lang: Lang,
    /// Present once signed in.
    pub tokens: Option<Tokens>,
    /// Present once signed in.
    pub me: Option<Me>,
    /// Between asking for a code and entering it.
    pub challenge: Option<Challenge>,
    /// Shown once, then dropped.
    pub flash: Option<Flash>,
    /// Serializes this process's refreshes: a refresh token used twice
    /// revokes the session.
    #[serde(skip)]
    pub refresh_lock: Arc<tokio::sync::Mutex<()>>,
    #[serde(skip, default = "Instant::now")]
    last_seen: Instant,
}

impl Session {
    fn new() -> Session {
        Session {
            csrf: random_token(),
            lang: Lang::default(),
            tokens: None,
            me: None,
            challenge: None,
            flash: None,
            refresh_lock: Arc::new(tokio::sync::Mutex::new(())),
            last_seen: Instant::now(),
        }
    }

    /// How long the session lives without a request.
    fn idle(&self) -> Duration {
        if self.tokens.is_some() {
            SIGNED_IN_IDLE
        } else {
            ANONYMOUS_IDLE
        }
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) > self.idle()
    }
}

fn store_key(id: &str) -> String {
    format!("portal:session:{id}")
}

/// The sessions: kept in the shared store, worked on in this process.
#[derive(Clone)]
pub struct Sessions {
    /// This process's copies of the sessions of requests in progress (and
    /// recent ones, until they expire).
    inner: Arc<Mutex<HashMap<String, Session>>>,
    /// Sessions moved to a new id by [`Sessions::rotate`], old id to new.
    moved: Arc<Mutex<HashMap<String, String>>>,
    store: Arc<dyn KvStore>,
}

impl Default for Sessions {
    /// Sessions in this process only.
    fn default() -> Sessions {
        Sessions::new(Arc::new(MemoryStore::new()))
    }
}

impl Sessions {
    /// Sessions kept in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> Sessions {
        Sessions {
            inner: Arc::default(),
            moved: Arc::default(),
            store,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_moved(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.moved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads the live session named by the cookie from the store (whichever
    /// replica wrote it last), or opens a new one; the flag tells whether it
    /// is new (and needs a cookie). A store that fails reads as no session.
    pub async fn open(&self, cookie: Option<&str>) -> (String, bool) {
        if let Some(id) = cookie.filter(|id| !id.is_empty()) {
            let stored = match self.store.get(&store_key(id)).await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(%error, "portal session store unavailable");
                    None
                }
            };
            if let Some(mut session) =
                stored.and_then(|json| serde_json::from_str::<Session>(&json).ok())
            {
                let mut sessions = self.lock();
                if let Some(local) = sessions.get(id) {
                    // One refresh at a time in this process, across reloads.
                    session.refresh_lock = local.refresh_lock.clone();
                }
                sessions.insert(id.to_owned(), session);
                return (id.to_owned(), false);
            }
        }
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, session| !session.expired(now));
        let id = random_token();
        sessions.insert(id.clone(), Session::new());
        (id, true)
    }

    /// Writes the session (under its new id after a rotation) back to the
    /// store, to live for its idle time from now.
    pub async fn save(&self, id: &str) {
        let moved_to = self.lock_moved().remove(id);
        if moved_to.is_some()
            && let Err(error) = self.store.delete(&store_key(id)).await
        {
            tracing::warn!(%error, "portal session not moved in the store");
        }
        let id = moved_to.as_deref().unwrap_or(id);
        let saved = {
            let mut sessions = self.lock();
            sessions.get_mut(id).map(|session| {
                session.last_seen = Instant::now();
                (serde_json::to_string(&*session), session.idle())
            })
        };
        let result = match saved {
            Some((Ok(json), idle)) => self.store.set(&store_key(id), &json, idle).await,
            Some((Err(error), _)) => Err(error.into()),
            None => self.store.delete(&store_key(id)).await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "portal session not saved");
        }
    }

    /// Runs `change` on a session; `None` when it is gone.
    pub fn with<R>(&self, id: &str, change: impl FnOnce(&mut Session) -> R) -> Option<R> {
        self.lock().get_mut(id).map(change)
    }

    /// Moves a session to a new id (at sign-in, against session fixation)
    /// with a new CSRF token; returns the new id.
    pub fn rotate(&self, id: &str) -> Option<String> {
        let mut sessions = self.lock();
        let mut session = sessions.remove(id)?;
        session.csrf = random_token();
        let new_id = random_token();
        sessions.insert(new_id.clone(), session);
        self.lock_moved().insert(id.to_owned(), new_id.clone());
        Some(new_id)
    }

    /// Forgets who is signed in, keeping the language.
    pub fn sign_out(&self, id: &str) {
        self.with(id, |session| {
            session.tokens = None;
            session.me = None;
            session.challenge = None;
        });
    }

    /// Stores a message for the next page.
    pub fn flash(&self, id: &str, flash: Flash) {
        self.with(id, |session| session.flash = Some(flash));
    }
}

/// Returns 32 random bytes as hex, for session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares a form's CSRF token with the session's in constant time; an
/// empty token never matches.
pub fn csrf_matches(expected: &str, given: &str) -> bool {
    if expected.is_empty() || expected.len() != given.len() {
        return false;
    }
    expected
        .bytes()
        .zip(given.bytes())
        .fold(0u8, |difference, (left, right)| difference | (left ^ right))
        == 0
}

/// Builds the `Set-Cookie` value of a session id.
pub fn session_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; Path=/portal; HttpOnly; SameSite=Lax{secure}")
}

/// Returns a cookie's value from the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// Reads `roles` of `/v1/me` in either shape: strings (`"support"`,
/// `"region_finance@R01"`, `"region_finance:R01"`) or objects
/// (`{"role": "region_finance", "region_code": "R01"}`); anything else is
/// skipped.
pub fn parse_roles(value: &Value) -> Vec<Role> {
    let Some(items) = value.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(text) => {
                let (name, region) = match text.split_once(['@', ':']) {
                    Some((name, region)) => (name, Some(region.to_owned())),
                    None => (text.as_str(), None),
                };
                Some(Role {
                    name: name.trim().to_owned(),
                    region: region.filter(|region| !region.is_empty()),
                })
            }
            Value::Object(fields) => {
                let name = fields
                    .get("role")
                    .or_else(|| fields.get("name"))?
                    .as_str()?;
                let region = fields
                    .get("region_code")
                    .or_else(|| fields.get("region"))
                    .and_then(Value::as_str)
                    .filter(|region| !region.is_empty())
                    .map(str::to_owned);
                Some(Role {
                    name: name.to_owned(),
                    region,
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_csrf_token_matches() {
        let token = random_token();
        assert!(csrf_matches(&token, &token.clone()));
    }

    #[test]
    fn another_shorter_or_empty_csrf_token_does_not_match() {
        let token = random_token();
        assert!(!csrf_matches(&token, &random_token()));
        assert!(!csrf_matches(&token, &token[..10]));
        assert!(!csrf_matches(&token, ""));
        assert!(!csrf_matches("", ""));
    }

    #[test]
    fn tokens_are_64_hex_characters_and_differ() {
        let first = random_token();
        assert_eq!(first.len(), 64);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first, random_token());
    }

    #[test]
    fn the_cookie_is_http_only_same_site_and_secure_when_asked() {
        assert_eq!(
            session_cookie("abc", true),
            "tavana_portal=abc; Path=/portal; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!session_cookie("abc", false).contains("Secure"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; tavana_portal=xyz; b=2"),
        );
        assert_eq!(cookie_value(&headers, COOKIE_NAME).as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&headers, "c"), None);
    }

    #[test]
    fn roles_are_read_as_strings_or_objects() {
        let roles = parse_roles(&json!([
            "employee",
            "region_finance@R01",
            {"role": "region_welfare_manager", "region_code": "R06"},
            {"role": "support"},
            42
        ]));

        assert_eq!(
            roles,
            vec![
                Role {
                    name: "employee".into(),
                    region: None
                },
                Role {
                    name: "region_finance".into(),
                    region: Some("R01".into())
                },
                Role {
                    name: "region_welfare_manager".into(),
                    region: Some("R06".into())
                },
                Role {
                    name: "support".into(),
                    region: None
                },
            ]
        );
    }

    #[test]
    fn a_regional_role_without_region_falls_back_to_the_employees_region() {
        let me = Me {
            region_code: "R01".into(),
            roles: parse_roles(&json!(["region_finance"])),
            ..Me::default()
        };
        assert_eq!(me.region_of("region_finance").as_deref(), Some("R01"));
        assert_eq!(me.region_of("support"), None);
    }

    #[tokio::test]
    async fn a_rotated_session_keeps_its_data_under_a_new_id_and_csrf() {
        let sessions = Sessions::default();
        let (id, new) = sessions.open(None).await;
        assert!(new);
        let csrf = sessions.with(&id, |s| s.csrf.clone()).unwrap();
        sessions.save(&id).await;

        let rotated = sessions.rotate(&id).unwrap();
        sessions.save(&id).await;

        assert_ne!(rotated, id);
        assert!(sessions.with(&id, |_| ()).is_none());
        assert_ne!(sessions.with(&rotated, |s| s.csrf.clone()).unwrap(), csrf);
        assert_eq!(sessions.open(Some(&rotated)).await, (rotated, false));
        assert!(sessions.open(Some(&id)).await.1, "the old id is gone");
    }

    #[tokio::test]
    async fn a_session_saved_by_one_replica_is_served_by_another() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (first, second) = (Sessions::new(store.clone()), Sessions::new(store));
        let (id, _) = first.open(None).await;
        first.with(&id, |s| {
            s.me = Some(Me {
                full_name: "Sara".into(),
                ..Me::default()
            });
            s.tokens = Some(Tokens {
                access: "a".into(),
                refresh: "r".into(),
                access_expires: SystemTime::now(),
            });
        });
        first.save(&id).await;

        let (found, new) = second.open(Some(&id)).await;

        assert_eq!((found.as_str(), new), (id.as_str(), false));
        let name = second.with(&id, |s| s.me.as_ref().map(|me| me.full_name.clone()));
        assert_eq!(name.flatten().as_deref(), Some("Sara"));
    }
}
