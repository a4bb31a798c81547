//! The page shell (header, role-based menu, messages, language switch) and
//! the answers every handler shares: redirects, refusals, API problems.

use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::Ctx;
use crate::api::{ApiError, Problem};
use crate::i18n::Lang;
use crate::session::{Flash, Me, Sessions};

/// One menu entry: path, Persian and English label.
struct MenuItem {
    href: &'static str,
    fa: &'static str,
    en: &'static str,
}

/// Returns the menu entries the user may open, following their roles.
fn menu(me: Option<&Me>) -> Vec<MenuItem> {
    let item = |href, fa, en| MenuItem { href, fa, en };
    let mut items = vec![item("/portal/", "خانه", "Home")];
    if let Some(me) = me {
        items.extend([
            item("/portal/profile", "مشخصات من", "My profile"),
            item("/portal/requests", "درخواست اعتبار", "Credit request"),
            item("/portal/balance", "مانده اعتبار", "Balance"),
            item("/portal/instalments", "وضعیت اقساط", "Instalments"),
            item(
                "/portal/guarantees",
                "تأیید یا رد ضمانت",
                "Approve or reject guarantee",
            ),
        ]);
        if me.has_role("region_finance") {
            items.push(item(
                "/portal/finance",
                "تأیید مالی منطقه",
                "Region finance",
            ));
        }
        if me.has_role("region_welfare_manager") {
            items.push(item(
                "/portal/proposals",
                "معرفی فروشگاه",
                "Propose a merchant",
            ));
        }
        if me.has_role("contracts") {
            items.push(item("/portal/contracts", "قراردادها", "Contracts"));
        }
        if me.has_role("support") {
            items.push(item("/portal/support", "پشتیبانی", "Support"));
            items.push(item(
                "/portal/support/unmatched",
                "سطرهای تطبیق‌نیافته",
                "Unmatched lines",
            ));
            items.push(item("/portal/support/audit", "رویدادنگاری", "Audit trail"));
        }
        if me.has_role("support") || me.has_role("region_finance") {
            items.push(item("/portal/overdue", "اقساط معوق", "Overdue instalments"));
        }
    }
    items.push(item(
        "/portal/merchants",
        "فروشگاه‌های طرف قرارداد",
        "Merchants",
    ));
    items.push(item("/portal/apps", "دریافت اپلیکیشن", "Get the app"));
    items
}

/// Renders a whole page around `body`.
pub fn page(ctx: &Ctx, title: &str, body: Markup) -> Markup {
    let lang = ctx.lang;
    let other = match lang {
        Lang::Fa => ("en", "English"),
        Lang::En => ("fa", "فارسی"),
    };
    html! {
        (DOCTYPE)
        html lang=(lang.code()) dir=(lang.dir()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " · " (ctx.t("کارت تاوانا", "Tavana card")) }
                link rel="stylesheet" href="/portal/assets/portal.css";
                script src="/portal/assets/htmx.min.js" defer {}
            }
            body {
                a.skip href="#main" { (ctx.t("رفتن به محتوا", "Skip to content")) }
                header.top {
                    div.bar {
                        a.brand href="/portal/" { (ctx.t("کارت رفاهی تاوانا", "Tavana welfare card")) }
                        span.who {
                            @if let Some(me) = &ctx.me {
                                (me.full_name) " "
                                form.inline method="post" action="/portal/logout" {
                                    (csrf_field(ctx))
                                    button.secondary type="submit" { (ctx.t("خروج", "Sign out")) }
                                }
                            } @else {
                                a.button.secondary href="/portal/login" { (ctx.t("ورود", "Sign in")) }
                            }
                        }
                    }
                }
                nav.menu aria-label=(ctx.t("منوی اصلی", "Main menu")) {
                    ul {
                        @for item in menu(ctx.me.as_ref()) {
                            li {
                                a href=(item.href) aria-current=[(ctx.path == item.href).then_some("page")] {
                                    (lang.pick(item.fa, item.en))
                                }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(flash) = &ctx.flash {
                        (flash_box(flash))
                    }
                    (body)
                }
                footer.bottom {
                    a href={ (ctx.path) "?lang=" (other.0) } lang=(other.0) { (other.1) }
                    a href="/portal/assets/fonts/OFL.txt" { (ctx.t("قلم وزیرمتن (OFL)", "Vazirmatn font (OFL)")) }
                }
            }
        }
    }
}

fn flash_box(flash: &Flash) -> Markup {
    html! {
        div.alert.ok[flash.ok].error[!flash.ok] role=(if flash.ok { "status" } else { "alert" }) {
            (flash.text)
            @if !flash.details.is_empty() {
                ul { @for detail in &flash.details { li { (detail) } } }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// Renders a page as a 200 answer.
pub fn render(ctx: &Ctx, title: &str, body: Markup) -> Response {
    Html(page(ctx, title, body).into_string()).into_response()
}

/// Renders a page with another status.
pub fn render_status(ctx: &Ctx, status: StatusCode, title: &str, body: Markup) -> Response {
    (status, Html(page(ctx, title, body).into_string())).into_response()
}

/// Answers `303 See Other` to `location` (after a form).
pub fn redirect(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location.to_owned())]).into_response()
}

/// Returns the problem's message (and its violations) in the page's
/// language.
pub fn problem_text(problem: &Problem, lang: Lang) -> (String, Vec<String>) {
    let text = lang
        .pick(&problem.message_fa, &problem.message_en)
        .to_owned();
    let details = problem
        .violations
        .iter()
        .map(|violation| {
            let message = lang.pick(&violation.message_fa, &violation.message_en);
            if message.is_empty() {
                violation.code.clone()
            } else {
                message.to_owned()
            }
        })
        .collect();
    (text, details)
}

/// Shows a problem as an error box.
pub fn problem_box(problem: &Problem, lang: Lang) -> Markup {
    let (text, details) = problem_text(problem, lang);
    flash_box(&Flash {
        ok: false,
        text,
        details,
    })
}

/// Answers a failed API call on a page: to the sign-in page when the
/// session is gone, else the page with the API's message and status.
pub fn failed(ctx: &Ctx, sessions: &Sessions, title: &str, error: ApiError) -> Response {
    match error {
        ApiError::SignedOut => signed_out(ctx, sessions),
        ApiError::Problem(problem) => {
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_GATEWAY);
            render_status(ctx, status, title, problem_box(&problem, ctx.lang))
        }
    }
}

/// Answers a failed form: the message goes to the next page, and the
/// browser goes back to `back`.
pub fn failed_form(ctx: &Ctx, sessions: &Sessions, back: &str, error: ApiError) -> Response {
    match error {
        ApiError::SignedOut => signed_out(ctx, sessions),
        ApiError::Problem(problem) => {
            let (text, details) = problem_text(&problem, ctx.lang);
            sessions.flash(
                &ctx.session,
                Flash {
                    ok: false,
                    text,
                    details,
                },
            );
            redirect(back)
        }
    }
}

/// Leaves a success message for the next page and goes to `to`.
pub fn done(ctx: &Ctx, sessions: &Sessions, to: &str, text: &str) -> Response {
    sessions.flash(
        &ctx.session,
        Flash {
            ok: true,
            text: text.to_owned(),
            details: Vec::new(),
        },
    );
    redirect(to)
}

fn signed_out(ctx: &Ctx, sessions: &Sessions) -> Response {
    sessions.flash(
        &ctx.session,
        Flash {
            ok: false,
            text: ctx
                .t(
                    "نشست شما پایان یافته است؛ دوباره وارد شوید.",
                    "Your session has ended; please sign in again.",
                )
                .to_owned(),
            details: Vec::new(),
        },
    );
    redirect("/portal/login")
}

/// Returns the signed-in user holding `role` (any role when `None`), or the
/// answer: the sign-in page, or 403 for a user without the role.
pub fn require<'a>(ctx: &'a Ctx, role: Option<&str>) -> Result<&'a Me, Response> {
    let Some(me) = &ctx.me else {
        return Err(redirect("/portal/login"));
    };
    match role {
        Some(role) if !me.has_role(role) => Err(forbidden(ctx)),
        _ => Ok(me),
    }
}

/// What every form post checks first: a signed-in user with `role` (any user with
/// `None`), and the form's CSRF token.
pub fn require_form<'a>(ctx: &'a Ctx, role: Option<&str>, csrf: &str) -> Result<&'a Me, Response> {
    let me = require(ctx, role)?;
    check_csrf(ctx, csrf)?;
    Ok(me)
}

/// The 403 page.
pub fn forbidden(ctx: &Ctx) -> Response {
    render_status(
        ctx,
        StatusCode::FORBIDDEN,
        ctx.t("دسترسی مجاز نیست", "Access denied"),
        html! {
            div.alert.error role="alert" {
                (ctx.t(
                    "شما به این بخش دسترسی ندارید. اگر فکر می‌کنید باید داشته باشید، با واحد رفاه سازمان خود تماس بگیرید.",
                    "You do not have access to this section. If you think you should, contact your organization's welfare unit.",
                ))
            }
            p { a href="/portal/" { (ctx.t("بازگشت به خانه", "Back to home")) } }
        },
    )
}

/// Checks a form's CSRF token; a mismatch answers 403.
pub fn check_csrf(ctx: &Ctx, given: &str) -> Result<(), Response> {
    if crate::session::csrf_matches(&ctx.csrf, given) {
        return Ok(());
    }
    Err(render_status(
        ctx,
        StatusCode::FORBIDDEN,
        ctx.t("فرم منقضی شده است", "The form has expired"),
        html! {
            div.alert.error role="alert" {
                (ctx.t(
                    "این فرم دیگر معتبر نیست. صفحه را دوباره باز کنید و دوباره تلاش کنید.",
                    "This form is no longer valid. Open the page again and retry.",
                ))
            }
        },
    ))
}
