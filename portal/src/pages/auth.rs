//! Sign-in with national ID + mobile + SMS code (R3), and sign-out.

use axum::Form;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::SET_COOKIE;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiError, Call, Payload, TokenPair};
use crate::format::{ascii_digits, persian_digits};
use crate::i18n::Lang;
use crate::layout::{check_csrf, csrf_field, failed_form, redirect, render};
use crate::session::{Challenge, Flash, Me, parse_roles, session_cookie};
use crate::{Ctx, Portal};

/// The first sign-in form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    csrf: String,
    national_id: String,
    mobile: String,
}

/// The code form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

/// The answer of `/v1/auth/login-code`.
#[derive(Debug, Deserialize)]
struct LoginChallenge {
    challenge_id: String,
}

/// `/v1/me` as the session keeps it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MeView {
    pub full_name: String,
    pub national_id: String,
    pub mobile: String,
    pub organization_id: String,
    pub region_code: String,
    pub net_salary: i64,
    pub service_start_date: String,
    pub roles: serde_json::Value,
}

impl MeView {
    /// What the session keeps of the profile.
    pub fn to_me(&self) -> Me {
        Me {
            full_name: self.full_name.clone(),
            national_id: self.national_id.clone(),
            region_code: self.region_code.clone(),
            roles: parse_roles(&self.roles),
        }
    }
}

/// Shows the national ID + mobile form.
pub async fn login_form(ctx: Ctx) -> Response {
    if ctx.me.is_some() {
        return redirect("/portal/");
    }
    render(
        &ctx,
        ctx.t("ورود به پرتال", "Sign in"),
        html! {
            div.card {
                form.stack method="post" action="/portal/login" {
                    (csrf_field(&ctx))
                    label {
                        (ctx.t("کد ملی", "National ID"))
                        input #national_id name="national_id" type="text" inputmode="numeric"
                            autocomplete="off" required maxlength="12" dir="ltr";
                    }
                    label {
                        (ctx.t("شمارهٔ همراه", "Mobile number"))
                        input #mobile name="mobile" type="tel" inputmode="tel" autocomplete="tel"
                            required maxlength="16" placeholder="09xxxxxxxxx" dir="ltr";
                    }
                    button type="submit" { (ctx.t("دریافت کد پیامکی", "Send me a code")) }
                }
                p.hint {
                    (ctx.t(
                        "اگر کد نرسید، درستی کد ملی و شمارهٔ همراه ثبت‌شده را بررسی کنید؛ برای تغییر شماره به نمایندهٔ رفاه سازمان خود مراجعه کنید.",
                        "If no code arrives, check that your national ID and registered mobile are right; to change the number, ask your organization's welfare representative.",
                    ))
                }
            }
        },
    )
}

/// Asks the gateway to send a login code, then shows the code form.
pub async fn ask_code(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(refused) = check_csrf(&ctx, &form.csrf) {
        return refused;
    }
    let mobile = ascii_digits(form.mobile.trim());
    let call = Call::post(
        "/v1/auth/login-code",
        Payload::Json(json!({
            "national_id": ascii_digits(form.national_id.trim()),
            "mobile": mobile,
        })),
    );
    match portal.gateway.json_anonymous::<LoginChallenge>(&call).await {
        Ok(challenge) => {
            portal.sessions.with(&ctx.session, |session| {
                session.challenge = Some(Challenge {
                    id: challenge.challenge_id,
                    mobile,
                });
            });
            redirect("/portal/login/code")
        }
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/login", error),
    }
}

/// Masks a mobile number but its last four digits.
fn masked(mobile: &str, lang: Lang) -> String {
    let tail: String = mobile
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let text = format!("•••••••{tail}");
    match lang {
        Lang::Fa => persian_digits(&text),
        Lang::En => text,
    }
}

/// Shows the form for the SMS code.
pub async fn code_form(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let challenge = portal
        .sessions
        .with(&ctx.session, |session| session.challenge.clone())
        .flatten();
    let Some(challenge) = challenge else {
        return redirect("/portal/login");
    };
    render(
        &ctx,
        ctx.t("کد پیامکی", "SMS code"),
        html! {
            div.card {
                p {
                    (ctx.t("اگر اطلاعات شما درست باشد، کدی شش‌رقمی به این شماره پیامک شد:", "If your details match, a six-digit code was sent to:"))
                    " " span dir="ltr" { (masked(&challenge.mobile, ctx.lang)) }
                }
                form.stack method="post" action="/portal/login/code" {
                    (csrf_field(&ctx))
                    label {
                        (ctx.t("کد شش‌رقمی", "Six-digit code"))
                        input #code name="code" type="text" inputmode="numeric"
                            autocomplete="one-time-code" required maxlength="6" dir="ltr" autofocus;
                    }
                    button type="submit" { (ctx.t("ورود", "Sign in")) }
                }
                p.hint {
                    (ctx.t("کد تا دو دقیقه معتبر است. ", "The code is valid for two minutes. "))
                    a href="/portal/login" { (ctx.t("درخواست کد تازه", "Ask for a new code")) }
                }
            }
        },
    )
}

/// Exchanges the code for tokens, loads the profile and starts the
/// signed-in session under a new id.
pub async fn sign_in(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Err(refused) = check_csrf(&ctx, &form.csrf) {
        return refused;
    }
    let challenge = portal
        .sessions
        .with(&ctx.session, |session| session.challenge.clone())
        .flatten();
    let Some(challenge) = challenge else {
        return redirect("/portal/login");
    };
    let call = Call::post(
        "/v1/auth/token",
        Payload::Json(json!({
            "challenge_id": challenge.id,
            "code": ascii_digits(form.code.trim()),
        })),
    );
    let pair = match portal.gateway.json_anonymous::<TokenPair>(&call).await {
        Ok(pair) => pair,
        Err(error) => return failed_form(&ctx, &portal.sessions, "/portal/login/code", error),
    };
    portal.sessions.with(&ctx.session, |session| {
        session.tokens = Some(pair.into_tokens());
        session.challenge = None;
    });
    let me = match portal
        .gateway
        .json::<MeView>(&ctx.session, &Call::get("/v1/me"))
        .await
    {
        Ok(me) => me,
        Err(error) => {
            portal.sessions.sign_out(&ctx.session);
            return failed_form(&ctx, &portal.sessions, "/portal/login", error);
        }
    };
    portal.sessions.with(&ctx.session, |session| {
        session.me = Some(me.to_me());
        session.flash = Some(Flash {
            ok: true,
            text: format!("{} {}", ctx.t("خوش آمدید،", "Welcome,"), me.full_name),
            details: Vec::new(),
        });
    });
    let Some(new_id) = portal.sessions.rotate(&ctx.session) else {
        return redirect("/portal/login");
    };
    let mut response = redirect("/portal/");
    if let Ok(cookie) =
        HeaderValue::from_str(&session_cookie(&new_id, portal.settings.secure_cookie))
    {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// Ends the session at the gateway and here.
pub async fn sign_out(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<super::CsrfForm>,
) -> Response {
    if let Err(refused) = check_csrf(&ctx, &form.csrf) {
        return refused;
    }
    if ctx.me.is_some() {
        let call = Call::post("/v1/auth/logout", Payload::Empty);
        if let Err(ApiError::Problem(problem)) = portal.gateway.send(&ctx.session, &call).await {
            tracing::info!(code = %problem.code, "logout refused by the gateway");
        }
    }
    portal.sessions.sign_out(&ctx.session);
    portal.sessions.flash(
        &ctx.session,
        Flash {
            ok: true,
            text: ctx
                .t("از پرتال خارج شدید.", "You have signed out.")
                .to_owned(),
            details: Vec::new(),
        },
    );
    redirect("/portal/login")
}
