//! The employee's pages: home, profile (S16), credit request with its
//! timeline (S3, S17), balance (S19), instalments (S20), app links (S6).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::auth::MeView;
use super::{CsrfForm, parse_number, segment};
use crate::api::{ApiError, Call, Payload};
use crate::format::{
    digits, grouped, jalali_datetime, jalali_from_iso_date, jalali_period, money, parse_instant,
};
use crate::i18n::{Lang, request_status, role_name};
use crate::layout::{
    csrf_field, done, failed, failed_form, problem_box, render, require, require_form,
};
use crate::session::parse_roles;
use crate::{Ctx, Portal};

/// A person named on a request.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Party {
    pub national_id: String,
    pub full_name: String,
}

/// One step of a request's history (R11).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatusChange {
    pub status: String,
    pub at: Option<String>,
    pub by_role: String,
    pub reason: Option<String>,
    pub message_fa: String,
    pub message_en: String,
}

/// A credit request as the API shows it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreditRequest {
    pub id: String,
    pub status: String,
    pub applicant: Option<Party>,
    pub guarantor: Option<Party>,
    pub monthly_credit: i64,
    pub instalment_months: i64,
    pub purchasing_power: i64,
    pub guarantor_active_guarantees: i64,
    pub history: Vec<StatusChange>,
    pub activates_at: Option<String>,
    pub created_at: Option<String>,
}

impl CreditRequest {
    /// Tells whether the request still waits for a decision.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.status.as_str(),
            "pending_guarantor" | "pending_finance"
        )
    }
}

/// A page of a list.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// Writes an optional API time in Jalali, or a dash.
pub fn when(text: Option<&str>, lang: Lang) -> String {
    text.and_then(parse_instant)
        .map(|instant| jalali_datetime(instant, lang))
        .unwrap_or_else(|| "—".to_owned())
}

/// A status as a badge.
pub fn status_badge(status: &str, lang: Lang) -> Markup {
    html! { span class={ "badge " (status) } { (request_status(status, lang)) } }
}

/// Money in a cell that does not wrap.
pub fn amount(rial: i64, lang: Lang) -> Markup {
    html! { span.num { (money(rial, lang)) } }
}

/// The home page: a welcome, or the user's sections.
pub async fn home(ctx: Ctx) -> Response {
    let body = match &ctx.me {
        None => html! {
            div.card {
                p { (ctx.t(
                    "با کارت رفاهی تاوانا، کارکنان آموزش و پرورش با ضمانت یک همکار، اعتبار ماهانه برای خرید نقدی یا اقساطی از فروشگاه‌های طرف قرارداد دریافت می‌کنند.",
                    "With the Tavana welfare card, Ministry of Education staff get a monthly credit line, guaranteed by a colleague, to buy on credit or in instalments from contracted merchants.",
                )) }
                p { a.button href="/portal/login" { (ctx.t("ورود با کد ملی و شمارهٔ همراه", "Sign in with national ID and mobile")) } }
            }
            div.grid {
                div.card { h2 { a href="/portal/merchants" { (ctx.t("فروشگاه‌های طرف قرارداد", "Contracted merchants")) } } }
                div.card { h2 { a href="/portal/apps" { (ctx.t("دریافت اپلیکیشن", "Get the app")) } } }
            }
        },
        Some(me) => html! {
            div.card {
                p { (ctx.t("نقش‌های شما:", "Your roles:")) " "
                    @for role in &me.roles {
                        span.badge { (role_name(&role.name, ctx.lang))
                            @if let Some(region) = &role.region { " " (digits(region, ctx.lang)) } }
                        " "
                    }
                }
            }
            div.grid {
                div.card {
                    h2 { a href="/portal/requests" { (ctx.t("درخواست اعتبار", "Credit request")) } }
                    p.hint { (ctx.t("ثبت درخواست، معرفی ضامن و پیگیری وضعیت", "File a request, name a guarantor, follow its status")) }
                }
                div.card {
                    h2 { a href="/portal/balance" { (ctx.t("مانده اعتبار", "Balance")) } }
                    p.hint { (ctx.t("اعتبار ماهانه، سقف اقساط و قدرت خرید", "Monthly credit, instalment ceiling and purchasing power")) }
                }
                div.card {
                    h2 { a href="/portal/guarantees" { (ctx.t("تأیید یا رد ضمانت", "Approve or reject guarantee")) } }
                    p.hint { (ctx.t("درخواست‌هایی که شما را ضامن معرفی کرده‌اند", "Requests that name you as guarantor")) }
                }
            }
        },
    };
    render(
        &ctx,
        ctx.t("پرتال کارت رفاهی تاوانا", "Tavana welfare card portal"),
        body,
    )
}

/// What the employee's next credit request may ask for, as the API states it (R7, S10).
#[derive(Debug, Deserialize)]
struct CreditLimits {
    max_monthly_credit: i64,
    max_instalment_months: u32,
}

async fn credit_limits(portal: &Portal, ctx: &Ctx) -> Result<CreditLimits, ApiError> {
    portal
        .gateway
        .json(&ctx.session, &Call::get("/v1/me/credit-limits"))
        .await
}

/// The profile as HR has it, with the S16 hint.
pub async fn profile(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("مشخصات من", "My profile");
    if let Err(answer) = require(&ctx, None) {
        return answer;
    }
    let me: MeView = match portal
        .gateway
        .json(&ctx.session, &Call::get("/v1/me"))
        .await
    {
        Ok(me) => me,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let limits = match credit_limits(&portal, &ctx).await {
        Ok(limits) => limits,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    portal
        .sessions
        .with(&ctx.session, |session| session.me = Some(me.to_me()));
    let lang = ctx.lang;
    render(
        &ctx,
        title,
        html! {
            div.card {
                dl.facts {
                    dt { (ctx.t("نام", "Name")) } dd { (me.full_name) }
                    dt { (ctx.t("کد ملی", "National ID")) } dd { (digits(&me.national_id, lang)) }
                    dt { (ctx.t("شمارهٔ همراه", "Mobile")) } dd dir="ltr" { (digits(&me.mobile, lang)) }
                    dt { (ctx.t("سازمان", "Organization")) } dd { (digits(&me.organization_id, lang)) }
                    dt { (ctx.t("منطقه", "Region")) } dd { (digits(&me.region_code, lang)) }
                    dt { (ctx.t("حقوق خالص", "Net salary")) } dd { (amount(me.net_salary, lang)) }
                    dt { (ctx.t("سقف اعتبار ماهانه (یک‌چهارم حقوق)", "Monthly credit ceiling (a quarter of salary)")) }
                    dd { (amount(limits.max_monthly_credit, lang)) }
                    dt { (ctx.t("تاریخ شروع خدمت", "Service start date")) } dd { (jalali_from_iso_date(&me.service_start_date, lang)) }
                    dt { (ctx.t("نقش‌ها", "Roles")) }
                    dd { @for role in parse_roles(&me.roles) { span.badge { (role_name(&role.name, lang))
                        @if let Some(region) = &role.region { " " (digits(region, lang)) } } " " } }
                }
            }
            div.alert.ok role="note" {
                (ctx.t(
                    "این اطلاعات را ادارهٔ امور اداری و مالی منطقهٔ شما نگه می‌دارد. اگر حقوق، منطقه یا سابقهٔ خدمت نادرست است، از آن اداره بخواهید اصلاح کند و سپس درخواست ثبت کنید. برای تغییر شمارهٔ همراه به واحد رفاه سازمان خود بگویید.",
                    "Your region's administrative and finance office keeps these details. If salary, region or years of service are wrong, ask that office to correct them, then file your request. To change your mobile number, tell your organization's welfare unit.",
                ))
            }
        },
    )
}

/// The file-a-request form and the list of requests.
pub async fn requests(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("درخواست اعتبار", "Credit request");
    if let Err(answer) = require(&ctx, None) {
        return answer;
    }
    let list: Page<CreditRequest> = match portal
        .gateway
        .json(&ctx.session, &Call::get("/v1/me/credit-requests"))
        .await
    {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let limits = match credit_limits(&portal, &ctx).await {
        Ok(limits) => limits,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    let ceiling = limits.max_monthly_credit;
    let open = list
        .items
        .iter()
        .find(|request| request.is_pending() || request.status == "approved");
    let after_rejection = open.is_none()
        && list.items.first().is_some_and(|request| {
            matches!(
                request.status.as_str(),
                "guarantor_rejected" | "finance_rejected" | "cancelled"
            )
        });
    render(
        &ctx,
        title,
        html! {
            @if let Some(open) = open {
                div.card {
                    p { (ctx.t("درخواست جاری شما:", "Your current request:")) " " (status_badge(&open.status, lang)) " "
                        a href={ "/portal/requests/" (open.id) } { (ctx.t("مشاهدهٔ وضعیت", "See its status")) } }
                }
            } @else {
                div.card {
                    h2 { (ctx.t("ثبت درخواست تازه", "File a new request")) }
                    @if after_rejection {
                        p.hint { (ctx.t(
                            "درخواست قبلی شما تأیید نشد یا لغو شد؛ می‌توانید درخواست تازه‌ای ثبت کنید.",
                            "Your previous request was not approved or was cancelled; you can file a new one.",
                        )) }
                    }
                    form.stack method="post" action="/portal/requests" {
                        (csrf_field(&ctx))
                        label {
                            (ctx.t("کد ملی ضامن (همکار همان منطقه)", "Guarantor's national ID (a colleague of your region)"))
                            input #guarantor_national_id name="guarantor_national_id" type="text" inputmode="numeric"
                                required maxlength="12" dir="ltr";
                        }
                        label {
                            (ctx.t("اعتبار ماهانه (تومان)", "Monthly credit (toman)"))
                            input #monthly_credit name="monthly_credit" type="text" inputmode="numeric" required dir="ltr"
                                aria-describedby="ceiling-hint";
                        }
                        p.hint #ceiling-hint {
                            (ctx.t("سقف اعتبار ماهانه، یک‌چهارم حقوق خالص: ", "Ceiling, a quarter of net salary: "))
                            strong { (money(ceiling, lang)) }
                        }
                        label {
                            (ctx.t("حداکثر تعداد اقساط (ماه)", "Maximum instalments (months)"))
                            input #instalment_months name="instalment_months" type="number" min="1" max=(limits.max_instalment_months) required dir="ltr";
                        }
                        p.hint { (ctx.t(
                            "قدرت خرید = اعتبار ماهانه × تعداد اقساط.",
                            "Purchasing power = monthly credit × instalments.",
                        )) }
                        button type="submit" { (ctx.t("ثبت درخواست", "File the request")) }
                    }
                }
            }
            @if !list.items.is_empty() {
                h2 { (ctx.t("درخواست‌های من", "My requests")) }
                div.table-wrap {
                    table {
                        thead { tr {
                            th scope="col" { (ctx.t("تاریخ", "Filed")) }
                            th scope="col" { (ctx.t("وضعیت", "Status")) }
                            th scope="col" { (ctx.t("ضامن", "Guarantor")) }
                            th scope="col" { (ctx.t("اعتبار ماهانه", "Monthly credit")) }
                            th scope="col" { (ctx.t("اقساط", "Months")) }
                            th scope="col" { (ctx.t("جزئیات", "Details")) }
                        } }
                        tbody {
                            @for request in &list.items {
                                tr {
                                    td { (when(request.created_at.as_deref(), lang)) }
                                    td { (status_badge(&request.status, lang)) }
                                    td { @if let Some(guarantor) = &request.guarantor { (guarantor.full_name) } }
                                    td { (amount(request.monthly_credit, lang)) }
                                    td { (grouped(request.instalment_months, lang)) }
                                    td { a href={ "/portal/requests/" (request.id) } { (ctx.t("جزئیات", "Details")) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The file-a-request form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileForm {
    csrf: String,
    guarantor_national_id: String,
    monthly_credit: String,
    instalment_months: String,
}

/// Files a credit request (R7-R9); every failed rule is shown.
pub async fn file_request(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<FileForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, None, &form.csrf) {
        return refused;
    }
    let (Some(toman), Some(months)) = (
        parse_number(&form.monthly_credit),
        parse_number(&form.instalment_months),
    ) else {
        return failed_form(&ctx, &portal.sessions, "/portal/requests", number_problem());
    };
    let call = Call::post(
        "/v1/me/credit-requests",
        Payload::Json(json!({
            "guarantor_national_id": crate::format::ascii_digits(form.guarantor_national_id.trim()),
            "monthly_credit": toman.saturating_mul(10),
            "instalment_months": months,
        })),
    );
    match portal
        .gateway
        .json::<CreditRequest>(&ctx.session, &call)
        .await
    {
        Ok(request) => done(
            &ctx,
            &portal.sessions,
            &format!("/portal/requests/{}", segment(&request.id)),
            ctx.t(
                "درخواست شما ثبت شد و برای ضامن فرستاده شد.",
                "Your request was filed and sent to your guarantor.",
            ),
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/requests", error),
    }
}

/// The error of a field that is not a whole number.
pub fn number_problem() -> ApiError {
    ApiError::Problem(crate::api::Problem {
        status: 400,
        code: "number_invalid".into(),
        message_fa: "مبلغ و تعداد اقساط باید عدد صحیح باشند.".into(),
        message_en: "Amount and months must be whole numbers.".into(),
        violations: Vec::new(),
    })
}

/// A request's details and status timeline, with cancel while pending.
pub async fn request_detail(
    State(portal): State<Portal>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    let title = ctx.t("وضعیت درخواست", "Request status");
    if let Err(answer) = require(&ctx, None) {
        return answer;
    }
    let request: CreditRequest = match portal
        .gateway
        .json(
            &ctx.session,
            &Call::get(format!("/v1/credit-requests/{}", segment(&id))),
        )
        .await
    {
        Ok(request) => request,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    let rejected = matches!(
        request.status.as_str(),
        "guarantor_rejected" | "finance_rejected" | "cancelled"
    );
    render(
        &ctx,
        title,
        html! {
            div.card {
                dl.facts {
                    dt { (ctx.t("وضعیت", "Status")) } dd { (status_badge(&request.status, lang)) }
                    @if let Some(guarantor) = &request.guarantor {
                        dt { (ctx.t("ضامن", "Guarantor")) } dd { (guarantor.full_name) " (" (digits(&guarantor.national_id, lang)) ")" }
                    }
                    dt { (ctx.t("اعتبار ماهانه", "Monthly credit")) } dd { (amount(request.monthly_credit, lang)) }
                    dt { (ctx.t("حداکثر اقساط", "Maximum instalments")) } dd { (grouped(request.instalment_months, lang)) }
                    dt { (ctx.t("قدرت خرید", "Purchasing power")) } dd { (amount(request.purchasing_power, lang)) }
                    @if request.activates_at.is_some() {
                        dt { (ctx.t("قابل استفاده از", "Usable from")) } dd { (when(request.activates_at.as_deref(), lang)) }
                    }
                }
            }
            h2 { (ctx.t("مراحل", "Timeline")) }
            ol.timeline {
                @for change in &request.history {
                    li {
                        (status_badge(&change.status, lang))
                        " " span.when { (when(change.at.as_deref(), lang)) }
                        p { (lang.pick(&change.message_fa, &change.message_en)) }
                        @if let Some(reason) = change.reason.as_deref().filter(|reason| !reason.is_empty()) {
                            p.hint { (ctx.t("دلیل: ", "Reason: ")) (reason) }
                        }
                    }
                }
            }
            @if request.is_pending() {
                form.inline method="post" action={ "/portal/requests/" (segment(&request.id)) "/cancel" } {
                    (csrf_field(&ctx))
                    button.danger type="submit" { (ctx.t("لغو درخواست", "Cancel the request")) }
                }
            }
            @if rejected {
                p { a.button href="/portal/requests" { (ctx.t("ثبت درخواست تازه", "File a new request")) } }
            }
        },
    )
}

/// Cancels a pending request.
pub async fn cancel_request(
    State(portal): State<Portal>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, None, &form.csrf) {
        return refused;
    }
    let back = format!("/portal/requests/{}", segment(&id));
    let call = Call::post(
        format!("/v1/credit-requests/{}/cancel", segment(&id)),
        Payload::Empty,
    );
    match portal.gateway.send(&ctx.session, &call).await {
        Ok(_) => done(
            &ctx,
            &portal.sessions,
            &back,
            ctx.t("درخواست لغو شد.", "The request was cancelled."),
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, &back, error),
    }
}

/// `/v1/me/balance`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Balance {
    status: String,
    activates_at: Option<String>,
    monthly_credit: i64,
    max_instalments: i64,
    purchasing_power: i64,
    available_monthly: i64,
    available_total: i64,
    next_release_at: Option<String>,
    overdue_amount: i64,
}

/// The balance: M, N, P, what is available now and the next release.
pub async fn balance(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("مانده اعتبار", "Balance");
    if let Err(answer) = require(&ctx, None) {
        return answer;
    }
    let balance: Balance = match portal
        .gateway
        .json(&ctx.session, &Call::get("/v1/me/balance"))
        .await
    {
        Ok(balance) => balance,
        Err(ApiError::Problem(problem)) if problem.status == 404 => {
            return render(
                &ctx,
                title,
                html! {
                    (problem_box(&problem, ctx.lang))
                    p { a href="/portal/requests" { (ctx.t("ثبت یا پیگیری درخواست اعتبار", "File or follow a credit request")) } }
                },
            );
        }
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    let status = match balance.status.as_str() {
        "active" => ctx.t("فعال", "Active").to_owned(),
        "pending_activation" | "pending" => ctx
            .t(
                "در انتظار فعال‌سازی (۷۲ ساعت پس از تأیید)",
                "Waiting for activation (72 hours after approval)",
            )
            .to_owned(),
        "suspended" => ctx.t("معلق", "Suspended").to_owned(),
        "closed" => ctx.t("بسته", "Closed").to_owned(),
        "overdue" => ctx
            .t(
                "قسط معوق دارید؛ تا تسویهٔ آن خرید ممکن نیست",
                "An instalment is overdue; no purchase until it is paid",
            )
            .to_owned(),
        other => other.to_owned(),
    };
    let closable = balance.status != "closed";
    render(
        &ctx,
        title,
        html! {
            div.card {
                dl.facts #balance {
                    dt { (ctx.t("وضعیت", "Status")) } dd { (status) }
                    dt { (ctx.t("اعتبار ماهانه", "Monthly credit")) } dd { (amount(balance.monthly_credit, lang)) }
                    dt { (ctx.t("حداکثر تعداد اقساط", "Maximum instalments")) } dd { (grouped(balance.max_instalments, lang)) }
                    dt { (ctx.t("قدرت خرید", "Purchasing power")) } dd { (amount(balance.purchasing_power, lang)) }
                    dt { (ctx.t("قابل استفادهٔ این ماه", "Available this month")) } dd { (amount(balance.available_monthly, lang)) }
                    dt { (ctx.t("قابل استفاده از قدرت خرید", "Available purchasing power")) } dd { (amount(balance.available_total, lang)) }
                    dt { (ctx.t("فعال از", "Active from")) } dd { (when(balance.activates_at.as_deref(), lang)) }
                    @if balance.overdue_amount > 0 {
                        dt { (ctx.t("مبلغ معوق", "Overdue amount")) } dd #overdue_amount { (amount(balance.overdue_amount, lang)) }
                    }
                    @if balance.next_release_at.is_some() {
                        dt { (ctx.t("آزادسازی بعدی اعتبار", "Next credit release")) } dd { (when(balance.next_release_at.as_deref(), lang)) }
                    }
                }
            }
            @if closable {
                form.inline #close-facility method="post" action="/portal/balance/close" {
                    (csrf_field(&ctx))
                    p { (ctx.t(
                        "اگر بدهی و اعتبار رزروشده‌ای ندارید می‌توانید اعتبار را ببندید؛ ضمانت ضامن شما آزاد می‌شود.",
                        "With nothing owed and nothing held you may close your credit; your guarantor's guarantee is released.",
                    )) }
                    button.danger type="submit" { (ctx.t("بستن اعتبار", "Close my credit")) }
                }
            }
        },
    )
}

/// Closes the employee's facility (R30): 409 `facility_has_debt` while something is owed
/// or held, shown on the balance page.
pub async fn close_facility(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, None, &form.csrf) {
        return refused;
    }
    let back = "/portal/balance";
    let call = Call::post("/v1/me/facility/close", Payload::Empty);
    match portal.gateway.send(&ctx.session, &call).await {
        Ok(_) => done(
            &ctx,
            &portal.sessions,
            back,
            ctx.t("اعتبار بسته شد.", "Your credit is closed."),
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, back, error),
    }
}

/// `?state=` of the instalments page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InstalmentFilter {
    state: String,
}

/// One instalment.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Instalment {
    merchant_name: String,
    period: String,
    due_period: String,
    amount: i64,
    state: String,
    settled_at: Option<String>,
}

/// Settled, unsettled and finished instalments (S20).
pub async fn instalments(
    State(portal): State<Portal>,
    ctx: Ctx,
    Query(filter): Query<InstalmentFilter>,
) -> Response {
    let title = ctx.t("وضعیت اقساط", "Instalments");
    if let Err(answer) = require(&ctx, None) {
        return answer;
    }
    let state = match filter.state.as_str() {
        "settled" | "finished" | "overdue" => filter.state.clone(),
        _ => "unsettled".to_owned(),
    };
    let call = Call::get("/v1/me/instalments")
        .query("state", &state)
        .query("page_size", "100");
    let list: Page<Instalment> = match portal.gateway.json(&ctx.session, &call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    let tabs = [
        ("unsettled", ctx.t("پرداخت‌نشده", "Unsettled")),
        ("overdue", ctx.t("معوق", "Overdue")),
        ("settled", ctx.t("تسویه‌شده", "Settled")),
        ("finished", ctx.t("خریدهای تمام‌شده", "Finished")),
    ];
    render(
        &ctx,
        title,
        html! {
            nav aria-label=(ctx.t("نوع اقساط", "Instalment kind")) {
                ul.links {
                    @for (key, label) in tabs {
                        li { a href={ "/portal/instalments?state=" (key) } aria-current=[(key == state).then_some("page")] { (label) } }
                    }
                }
            }
            @if list.items.is_empty() {
                p { (ctx.t("قسطی در این فهرست نیست.", "No instalments in this list.")) }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { (ctx.t("فروشگاه", "Merchant")) }
                        th scope="col" { (ctx.t("دورهٔ حقوق", "Salary period")) }
                        th scope="col" { (ctx.t("سررسید اصلی", "First due")) }
                        th scope="col" { (ctx.t("مبلغ", "Amount")) }
                        th scope="col" { (ctx.t("وضعیت", "State")) }
                        th scope="col" { (ctx.t("تاریخ تسویه", "Settled on")) }
                    } }
                    tbody { @for item in &list.items { tr {
                        td { (item.merchant_name) }
                        td { (jalali_period(&item.period, lang)) }
                        td { (jalali_period(if item.due_period.is_empty() { &item.period } else { &item.due_period }, lang)) }
                        td { (amount(item.amount, lang)) }
                        td { span class={ "badge " (item.state) } { (match item.state.as_str() {
                            "settled" => ctx.t("تسویه‌شده", "Settled"),
                            "unsettled" => ctx.t("پرداخت‌نشده", "Unsettled"),
                            "cancelled" => ctx.t("لغوشده", "Cancelled"),
                            "overdue" => ctx.t("معوق", "Overdue"),
                            other => other,
                        }) } }
                        td { (when(item.settled_at.as_deref(), lang)) }
                    } } }
                } }
            }
        },
    )
}

/// The app download links per OS (S6).
pub async fn apps(State(portal): State<Portal>, ctx: Ctx) -> Response {
    render(
        &ctx,
        ctx.t("دریافت اپلیکیشن", "Get the app"),
        html! {
            div.grid {
                @for link in &portal.settings.app_links {
                    div.card {
                        h2 { (link.os) }
                        p { a.button href=(link.url) rel="noopener" { (ctx.lang.pick(&link.label_fa, &link.label_en)) } }
                    }
                }
            }
            p.hint { (ctx.t(
                "پس از ساخته شدن حساب تاوانا، پیامکی با پیوند دریافت اپلیکیشن و آموزش‌ها برای شما فرستاده می‌شود.",
                "When your Tavana account is created, an SMS with the app link and tutorials is sent to you.",
            )) }
        },
    )
}
