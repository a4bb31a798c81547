//! Tavana's web portal (issue 8): server-rendered pages for employees,
//! guarantors, regional staff, contracts and support, Persian first and
//! right to left, with an English switch.
//!
//! The portal is a client of the gateway's HTTP API (`docs/API.md`): it
//! forwards the signed-in user's access token and never touches a database
//! or a service's gRPC. Sessions live in the shared store (Redis, or
//! in-process under `tavana up`), so any gateway replica serves any user;
//! the browser holds only a random id in an HttpOnly cookie. Every form
//! carries a CSRF synchronizer token. All paths are under `/portal/`.

mod api;
mod assets;
pub mod format;
pub mod i18n;
mod layout;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::Gateway;
use crate::i18n::Lang;
use crate::session::{COOKIE_NAME, Flash, Me, Sessions, cookie_value, session_cookie};

/// A link to the mobile app for one operating system (S6).
#[derive(Clone, Debug)]
pub struct AppLink {
    /// E.g. `Android`, `iOS`.
    pub os: String,
    /// What the link says, in Persian.
    pub label_fa: String,
    /// What the link says, in English.
    pub label_en: String,
    /// Where it goes.
    pub url: String,
}

/// How the portal runs.
#[derive(Clone, Debug)]
pub struct PortalSettings {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub gateway_url: String,
    /// The app download links shown on the download page.
    pub app_links: Vec<AppLink>,
    /// Marks the session cookie `Secure`; turn off only for plain-HTTP
    /// local development.
    pub secure_cookie: bool,
    /// The secret that lets the portal's calls name the client they are made
    /// for (the gateway of the same process knows it); `None` sends no client IP.
    pub forward_token: Option<String>,
}

impl PortalSettings {
    /// Settings for a gateway at `gateway_url` with the default app links;
    /// the cookie is `Secure` unless the gateway is plain HTTP on loopback.
    pub fn new(gateway_url: impl Into<String>) -> PortalSettings {
        let gateway_url = gateway_url.into();
        let secure_cookie = !is_loopback_http(&gateway_url);
        PortalSettings {
            gateway_url,
            app_links: default_app_links(),
            secure_cookie,
            forward_token: None,
        }
    }
}

impl PortalSettings {
    /// Settings of the portal served by the gateway listening on `address`:
    /// it calls that gateway's HTTP API, on loopback when the gateway listens
    /// on every address.
    pub fn beside_gateway(address: std::net::SocketAddr, secure_cookie: bool) -> PortalSettings {
        let mut own_address = address;
        if own_address.ip().is_unspecified() {
            own_address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let mut settings = PortalSettings::new(format!("http://{own_address}"));
        settings.secure_cookie = secure_cookie;
        settings
    }
}

fn is_loopback_http(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| {
        url.scheme() == "http"
            && matches!(
                url.host_str(),
                Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
            )
    })
}

/// Returns the download links of the app for Android and iOS.
pub fn default_app_links() -> Vec<AppLink> {
    vec![
        AppLink {
            os: "Android".into(),
            label_fa: "دریافت نسخهٔ اندروید (فایل APK)".into(),
            label_en: "Download for Android (APK)".into(),
            url: "https://app.tavana.example/android/tavana.apk".into(),
        },
        AppLink {
            os: "iOS".into(),
            label_fa: "نصب نسخهٔ iOS (وب‌اپلیکیشن)".into(),
            label_en: "Install for iOS (web app)".into(),
            url: "https://app.tavana.example/ios".into(),
        },
    ]
}

/// The portal's shared state.
#[derive(Clone)]
pub struct Portal {
    settings: Arc<PortalSettings>,
    sessions: Sessions,
    gateway: Gateway,
}

impl FromRef<Portal> for Sessions {
    fn from_ref(portal: &Portal) -> Sessions {
        portal.sessions.clone()
    }
}

/// Builds the portal's routes (state applied), all under `/portal/`, ready
/// to be merged into the gateway's router; sessions are kept in `store`.
pub fn router(settings: PortalSettings, store: Arc<dyn tavana_kit::store::KvStore>) -> Router {
    let sessions = Sessions::new(store);
    let portal = Portal {
        gateway: Gateway::new(&settings.gateway_url, sessions.clone())
            .with_forward_token(settings.forward_token.clone()),
        settings: Arc::new(settings),
        sessions,
    };
    pages::routes()
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            session_middleware,
        ))
        .layer(axum::middleware::from_fn(api::remember_client_ip))
        .with_state(portal)
        // Assets open no session.
        .merge(assets::routes())
}

/// The id of the request's session, set by [`session_middleware`].
#[derive(Clone, Debug)]
struct SessionId(String);

/// Opens or finds the session, applies `?lang=`, sets the cookie of a new
/// session and the headers every page carries.
async fn session_middleware(
    State(portal): State<Portal>,
    mut request: Request,
    next: Next,
) -> Response {
    let cookie = cookie_value(request.headers(), COOKIE_NAME);
    let (id, new) = portal.sessions.open(cookie.as_deref()).await;
    let lang = request.uri().query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "lang")
            .and_then(|(_, value)| Lang::parse(&value))
    });
    if let Some(lang) = lang {
        portal.sessions.with(&id, |session| session.lang = lang);
    }
    request.extensions_mut().insert(SessionId(id.clone()));
    let mut response = next.run(request).await;
    portal.sessions.save(&id).await;
    let headers = response.headers_mut();
    if new
        && !headers.contains_key(SET_COOKIE)
        && let Ok(value) =
            HeaderValue::from_str(&session_cookie(&id, portal.settings.secure_cookie))
    {
        headers.append(SET_COOKIE, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// What a page needs to know about the request: the session, its
/// language, CSRF token, user and one-time message.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// The session's id.
    pub session: String,
    /// The page's language.
    pub lang: Lang,
    /// The token every form carries.
    pub csrf: String,
    /// Who is signed in.
    pub me: Option<Me>,
    /// A message left by the previous request.
    pub flash: Option<Flash>,
    /// The request's path, for the language switch.
    pub path: String,
}

impl Ctx {
    /// Picks the text of the page's language.
    pub fn t<'a>(&self, fa: &'a str, en: &'a str) -> &'a str {
        self.lang.pick(fa, en)
    }

    /// Tells whether the signed-in user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.me.as_ref().is_some_and(|me| me.has_role(role))
    }
}

impl FromRequestParts<Portal> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, portal: &Portal) -> Result<Ctx, Response> {
        let Some(SessionId(session)) = parts.extensions.get::<SessionId>().cloned() else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let snapshot = portal.sessions.with(&session, |state| {
            (
                state.lang,
                state.csrf.clone(),
                state.me.clone().filter(|_| state.tokens.is_some()),
                state.flash.take(),
            )
        });
        let Some((lang, csrf, me, flash)) = snapshot else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        Ok(Ctx {
            session,
            lang,
            csrf,
            me,
            flash,
            path: parts.uri.path().to_owned(),
        })
    }
}
