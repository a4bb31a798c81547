//! Decisions of others than the applicant: the guarantor (S2, S4, S14),
//! region finance (S2, R10-R12), the welfare manager's merchant proposals
//! (S5, R26) and the contracts department (R26).

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::employee::{CreditRequest, Page, amount, status_badge, when};
use super::{DecisionForm, segment};
use crate::api::{Call, Payload};
use crate::format::{digits, grouped};
use crate::i18n::{Lang, merchant_kind, proposal_status};
use crate::layout::{
    csrf_field, done, failed, failed_form, forbidden, render, require, require_form,
};
use crate::{Ctx, Portal};

/// Approve and reject buttons with a reason, posting to `action`.
fn decision_form(ctx: &Ctx, action: &str, id: &str, reason_required_hint: bool) -> Markup {
    let reason_id = format!("reason-{id}");
    html! {
        form.stack method="post" action=(action) {
            (csrf_field(ctx))
            label for=(reason_id) {
                @if reason_required_hint {
                    (ctx.t("دلیل (برای رد لازم است)", "Reason (needed to reject)"))
                } @else {
                    (ctx.t("دلیل (اختیاری)", "Reason (optional)"))
                }
            }
            textarea id=(reason_id) name="reason" rows="2" {}
            div {
                button type="submit" name="decision" value="approve" { (ctx.t("تأیید", "Approve")) }
                " "
                button.danger type="submit" name="decision" value="reject" { (ctx.t("رد", "Reject")) }
            }
        }
    }
}

/// A request's applicant, guarantor and amounts.
fn request_facts(ctx: &Ctx, request: &CreditRequest) -> Markup {
    let lang = ctx.lang;
    html! {
        dl.facts {
            @if let Some(applicant) = &request.applicant {
                dt { (ctx.t("متقاضی", "Applicant")) } dd { (applicant.full_name) " (" (digits(&applicant.national_id, lang)) ")" }
            }
            @if let Some(guarantor) = &request.guarantor {
                dt { (ctx.t("ضامن", "Guarantor")) } dd { (guarantor.full_name) " (" (digits(&guarantor.national_id, lang)) ")" }
            }
            dt { (ctx.t("اعتبار ماهانه", "Monthly credit")) } dd { (amount(request.monthly_credit, lang)) }
            dt { (ctx.t("حداکثر اقساط", "Maximum instalments")) } dd { (grouped(request.instalment_months, lang)) }
            dt { (ctx.t("قدرت خرید", "Purchasing power")) } dd { (amount(request.purchasing_power, lang)) }
            dt { (ctx.t("وضعیت", "Status")) } dd { (status_badge(&request.status, lang)) }
            dt { (ctx.t("تاریخ ثبت", "Filed")) } dd { (when(request.created_at.as_deref(), lang)) }
        }
    }
}

/// The "approve or reject guarantee" list (S2, S14) with the guarantor's
/// own count of at most 3 (S4).
pub async fn guarantees(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("تأیید یا رد ضمانت", "Approve or reject guarantee");
    if let Err(answer) = require(&ctx, None) {
        return answer;
    }
    let call = Call::get("/v1/me/guarantee-requests").query("page_size", "100");
    let list: Page<CreditRequest> = match portal.gateway.json(&ctx.session, &call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    let (pending, decided): (Vec<_>, Vec<_>) = list
        .items
        .iter()
        .partition(|request| request.status == "pending_guarantor");
    let count = list
        .items
        .iter()
        .map(|request| request.guarantor_active_guarantees)
        .max()
        .unwrap_or(0);
    render(
        &ctx,
        title,
        html! {
            p.hint {
                (ctx.t("هر نفر حداکثر ضامن ۳ همکار می‌شود. ضمانت‌های فعال یا در جریان شما: ", "Each person may guarantee at most 3 colleagues. Your active or pending guarantees: "))
                strong #guarantee-count { (digits(&count.to_string(), lang)) " " (ctx.t("از", "of")) " " (digits("3", lang)) }
            }
            @if pending.is_empty() {
                p { (ctx.t("درخواستی در انتظار تأیید شما نیست.", "No request is waiting for your decision.")) }
            }
            @for request in &pending {
                section.card aria-label=(request.applicant.as_ref().map(|a| a.full_name.as_str()).unwrap_or_default()) {
                    (request_facts(&ctx, request))
                    (decision_form(&ctx, &format!("/portal/guarantees/{}/decision", segment(&request.id)), &request.id, false))
                }
            }
            @if !decided.is_empty() {
                h2 { (ctx.t("تصمیم‌های پیشین", "Earlier decisions")) }
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { (ctx.t("متقاضی", "Applicant")) }
                        th scope="col" { (ctx.t("اعتبار ماهانه", "Monthly credit")) }
                        th scope="col" { (ctx.t("وضعیت", "Status")) }
                    } }
                    tbody { @for request in &decided { tr {
                        td { @if let Some(applicant) = &request.applicant { (applicant.full_name) } }
                        td { (amount(request.monthly_credit, lang)) }
                        td { (status_badge(&request.status, lang)) }
                    } } }
                } }
            }
        },
    )
}

/// The guarantor approves or rejects (only the named guarantor can, S14).
pub async fn guarantor_decision(
    State(portal): State<Portal>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, None, &form.csrf) {
        return refused;
    }
    let call = Call::post(
        format!("/v1/credit-requests/{}/guarantor-decision", segment(&id)),
        Payload::Json(form.body()),
    );
    match portal.gateway.send(&ctx.session, &call).await {
        Ok(_) => done(
            &ctx,
            &portal.sessions,
            "/portal/guarantees",
            if form.decision == "approve" {
                ctx.t(
                    "ضمانت تأیید شد و درخواست به مالی منطقه رفت.",
                    "Guarantee approved; the request went to regional finance.",
                )
            } else {
                ctx.t("ضمانت رد شد.", "Guarantee rejected.")
            },
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/guarantees", error),
    }
}

/// The region's requests waiting for finance (R10).
pub async fn finance(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("تأیید مالی منطقه", "Region finance approvals");
    let me = match require(&ctx, Some("region_finance")) {
        Ok(me) => me,
        Err(answer) => return answer,
    };
    let Some(region) = me.region_of("region_finance") else {
        return forbidden(&ctx);
    };
    let call = Call::get(format!("/v1/regions/{}/credit-requests", segment(&region)))
        .query("status", "pending_finance")
        .query("page_size", "100");
    let list: Page<CreditRequest> = match portal.gateway.json(&ctx.session, &call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    render(
        &ctx,
        title,
        html! {
            p.hint { (ctx.t("منطقه: ", "Region: ")) (digits(&region, ctx.lang)) " · "
                (ctx.t("پس از تأیید، اعتبار ۷۲ ساعت بعد قابل استفاده است.", "After approval the credit is usable 72 hours later.")) }
            @if list.items.is_empty() {
                p { (ctx.t("درخواستی در انتظار تأیید مالی نیست.", "No request is waiting for finance.")) }
            }
            @for request in &list.items {
                section.card aria-label=(request.applicant.as_ref().map(|a| a.full_name.as_str()).unwrap_or_default()) {
                    (request_facts(&ctx, request))
                    (decision_form(&ctx, &format!("/portal/finance/{}/decision", segment(&request.id)), &request.id, true))
                }
            }
        },
    )
}

/// Region finance approves (the facility opens 72 h later, R12) or rejects.
pub async fn finance_decision(
    State(portal): State<Portal>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, Some("region_finance"), &form.csrf) {
        return refused;
    }
    let call = Call::post(
        format!("/v1/credit-requests/{}/finance-decision", segment(&id)),
        Payload::Json(form.body()),
    );
    match portal
        .gateway
        .json::<CreditRequest>(&ctx.session, &call)
        .await
    {
        Ok(request) => {
            let text = if form.decision == "approve" {
                format!(
                    "{} {}",
                    ctx.t(
                        "درخواست تأیید شد؛ قابل استفاده از",
                        "Request approved; usable from"
                    ),
                    when(request.activates_at.as_deref(), ctx.lang)
                )
            } else {
                ctx.t("درخواست رد شد.", "Request rejected.").to_owned()
            };
            done(&ctx, &portal.sessions, "/portal/finance", &text)
        }
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/finance", error),
    }
}

/// A merchant proposal.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Proposal {
    id: String,
    status: String,
    region_code: String,
    name: String,
    kind: String,
    website: Option<String>,
    city: Option<String>,
    province: Option<String>,
    categories: Vec<String>,
    supports_credit: bool,
    supports_instalment: bool,
    reason: Option<String>,
    merchant_id: Option<String>,
    created_at: Option<String>,
}

fn proposal_where(proposal: &Proposal) -> String {
    match (&proposal.website, &proposal.city, &proposal.province) {
        (Some(website), _, _) if !website.is_empty() => website.clone(),
        (_, Some(city), Some(province)) => format!("{city}، {province}"),
        (_, Some(city), None) => city.clone(),
        _ => String::new(),
    }
}

fn purchase_kinds(credit: bool, instalment: bool, lang: Lang) -> String {
    let mut kinds = Vec::new();
    if credit {
        kinds.push(lang.pick("نقدی یک‌ماهه", "One-month credit"));
    }
    if instalment {
        kinds.push(lang.pick("اقساطی", "Instalments"));
    }
    kinds.join(lang.pick("، ", ", "))
}

fn proposal_table(ctx: &Ctx, proposals: &[Proposal]) -> Markup {
    let lang = ctx.lang;
    html! {
        div.table-wrap { table {
            thead { tr {
                th scope="col" { (ctx.t("نام", "Name")) }
                th scope="col" { (ctx.t("نوع", "Kind")) }
                th scope="col" { (ctx.t("نشانی", "Where")) }
                th scope="col" { (ctx.t("منطقه", "Region")) }
                th scope="col" { (ctx.t("وضعیت", "Status")) }
                th scope="col" { (ctx.t("تاریخ", "Proposed")) }
            } }
            tbody { @for proposal in proposals { tr {
                td { (proposal.name) }
                td { (merchant_kind(&proposal.kind, lang)) }
                td { (proposal_where(proposal)) }
                td { (digits(&proposal.region_code, lang)) }
                td { span class={ "badge " (proposal.status) } { (proposal_status(&proposal.status, lang)) }
                    @if let Some(reason) = proposal.reason.as_deref().filter(|r| !r.is_empty()) { br; span.hint { (reason) } } }
                td { (when(proposal.created_at.as_deref(), lang)) }
            } } }
        } }
    }
}

/// The welfare manager's proposal form and the region's proposals (S5).
pub async fn proposals(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("معرفی فروشگاه", "Propose a merchant");
    if let Err(answer) = require(&ctx, Some("region_welfare_manager")) {
        return answer;
    }
    let call = Call::get("/v1/merchant-proposals").query("page_size", "100");
    let list: Page<Proposal> = match portal.gateway.json(&ctx.session, &call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    render(
        &ctx,
        title,
        html! {
            div.card {
                form.stack method="post" action="/portal/proposals" {
                    (csrf_field(&ctx))
                    label { (ctx.t("نام فروشگاه", "Shop name")) input #name name="name" type="text" required; }
                    label { (ctx.t("نوع", "Kind"))
                        select #kind name="kind" required {
                            option value="online" { (merchant_kind("online", ctx.lang)) }
                            option value="in_person" { (merchant_kind("in_person", ctx.lang)) }
                        }
                    }
                    label { (ctx.t("وب‌سایت (برای فروشگاه اینترنتی)", "Website (online shops)")) input #website name="website" type="url" dir="ltr"; }
                    label { (ctx.t("شهر (برای فروشگاه حضوری)", "City (in-person shops)")) input #city name="city" type="text"; }
                    label { (ctx.t("استان", "Province")) input #province name="province" type="text"; }
                    label { (ctx.t("نشانی", "Address")) input #address name="address" type="text"; }
                    label { (ctx.t("دسته‌ها (با ویرگول جدا کنید)", "Categories (comma separated)")) input #categories name="categories" type="text" required; }
                    label.check { input #supports_credit name="supports_credit" type="checkbox" value="on" checked; (ctx.t("خرید نقدی یک‌ماهه", "One-month credit purchases")) }
                    label.check { input #supports_instalment name="supports_instalment" type="checkbox" value="on"; (ctx.t("خرید اقساطی", "Instalment purchases")) }
                    label { (ctx.t("تلفن تماس", "Contact phone")) input #contact_phone name="contact_phone" type="tel" required dir="ltr"; }
                    button type="submit" { (ctx.t("ارسال به ادارهٔ قراردادها", "Send to the contracts department")) }
                }
            }
            h2 { (ctx.t("پیشنهادهای منطقه", "Proposals of the region")) }
            @if list.items.is_empty() { p { (ctx.t("هنوز پیشنهادی نیست.", "No proposals yet.")) } }
            @else { (proposal_table(&ctx, &list.items)) }
        },
    )
}

/// The proposal form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProposalForm {
    csrf: String,
    name: String,
    kind: String,
    website: String,
    city: String,
    province: String,
    address: String,
    categories: String,
    supports_credit: Option<String>,
    supports_instalment: Option<String>,
    contact_phone: String,
}

fn optional(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

/// Sends a proposal to contracts.
pub async fn propose(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<ProposalForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, Some("region_welfare_manager"), &form.csrf) {
        return refused;
    }
    let categories: Vec<&str> = form
        .categories
        .split([',', '،'])
        .map(str::trim)
        .filter(|category| !category.is_empty())
        .collect();
    let call = Call::post(
        "/v1/merchant-proposals",
        Payload::Json(json!({
            "name": form.name.trim(),
            "kind": form.kind,
            "website": optional(&form.website),
            "city": optional(&form.city),
            "province": optional(&form.province),
            "address": optional(&form.address),
            "categories": categories,
            "supports_credit": form.supports_credit.is_some(),
            "supports_instalment": form.supports_instalment.is_some(),
            "contact_phone": crate::format::ascii_digits(form.contact_phone.trim()),
        })),
    );
    match portal.gateway.send(&ctx.session, &call).await {
        Ok(_) => done(
            &ctx,
            &portal.sessions,
            "/portal/proposals",
            ctx.t(
                "پیشنهاد برای ادارهٔ قراردادها فرستاده شد.",
                "The proposal was sent to the contracts department.",
            ),
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/proposals", error),
    }
}

/// Contracts: pending proposals to decide, and contracted merchants to
/// suspend.
pub async fn contracts(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("قراردادها", "Contracts");
    if let Err(answer) = require(&ctx, Some("contracts")) {
        return answer;
    }
    let pending_call = Call::get("/v1/merchant-proposals")
        .query("status", "pending")
        .query("page_size", "100");
    let pending: Page<Proposal> = match portal.gateway.json(&ctx.session, &pending_call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let approved_call = Call::get("/v1/merchant-proposals")
        .query("status", "approved")
        .query("page_size", "100");
    let approved: Page<Proposal> = match portal.gateway.json(&ctx.session, &approved_call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    render(
        &ctx,
        title,
        html! {
            h2 { (ctx.t("پیشنهادهای در انتظار بررسی", "Proposals to review")) }
            @if pending.items.is_empty() { p { (ctx.t("پیشنهادی در انتظار نیست.", "No proposal is waiting.")) } }
            @for proposal in &pending.items {
                section.card aria-label=(proposal.name) {
                    dl.facts {
                        dt { (ctx.t("نام", "Name")) } dd { (proposal.name) }
                        dt { (ctx.t("نوع", "Kind")) } dd { (merchant_kind(&proposal.kind, lang)) }
                        dt { (ctx.t("نشانی", "Where")) } dd { (proposal_where(proposal)) }
                        dt { (ctx.t("منطقه", "Region")) } dd { (digits(&proposal.region_code, lang)) }
                        dt { (ctx.t("دسته‌ها", "Categories")) } dd { (proposal.categories.join("، ")) }
                        dt { (ctx.t("نوع خرید", "Purchase kinds")) } dd { (purchase_kinds(proposal.supports_credit, proposal.supports_instalment, lang)) }
                    }
                    (decision_form(&ctx, &format!("/portal/contracts/{}/decision", segment(&proposal.id)), &proposal.id, true))
                }
            }
            h2 { (ctx.t("فروشگاه‌های تأییدشده", "Approved merchants")) }
            @if approved.items.is_empty() { p { (ctx.t("هنوز فروشگاهی تأیید نشده است.", "No merchant approved yet.")) } }
            @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { (ctx.t("نام", "Name")) }
                        th scope="col" { (ctx.t("منطقه", "Region")) }
                        th scope="col" { (ctx.t("تعلیق", "Suspend")) }
                    } }
                    tbody { @for proposal in &approved.items { tr {
                        td { (proposal.name) }
                        td { (digits(&proposal.region_code, lang)) }
                        td { @if let Some(merchant_id) = &proposal.merchant_id {
                            form.inline method="post" action={ "/portal/contracts/merchants/" (segment(merchant_id)) "/suspend" } {
                                (csrf_field(&ctx))
                                label { (ctx.t("دلیل تعلیق", "Reason to suspend")) input name="reason" type="text"; }
                                button.danger type="submit" { (ctx.t("تعلیق", "Suspend")) }
                            }
                        } }
                    } } }
                } }
            }
        },
    )
}

/// The answer of a proposal decision.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DecisionAnswer {
    name: String,
    merchant_id: Option<String>,
    api_key: Option<String>,
}

/// Approves (showing the API key once) or rejects a proposal.
pub async fn proposal_decision(
    State(portal): State<Portal>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, Some("contracts"), &form.csrf) {
        return refused;
    }
    let call = Call::post(
        format!("/v1/merchant-proposals/{}/decision", segment(&id)),
        Payload::Json(form.body()),
    );
    let answer: DecisionAnswer = match portal.gateway.json(&ctx.session, &call).await {
        Ok(answer) => answer,
        Err(error) => return failed_form(&ctx, &portal.sessions, "/portal/contracts", error),
    };
    let Some(api_key) = answer.api_key.filter(|_| form.decision == "approve") else {
        return done(
            &ctx,
            &portal.sessions,
            "/portal/contracts",
            ctx.t("پیشنهاد رد شد.", "The proposal was rejected."),
        );
    };
    // The key is shown on this answer only: it is not kept anywhere here.
    render(
        &ctx,
        ctx.t("فروشگاه تأیید شد", "Merchant approved"),
        html! {
            div.alert.ok role="status" {
                (answer.name) " " (ctx.t("طرف قرارداد شد.", "is now contracted."))
                @if let Some(merchant_id) = &answer.merchant_id { " (" (merchant_id) ")" }
            }
            div.card {
                p { strong { (ctx.t(
                    "کلید API فروشگاه فقط همین یک بار نمایش داده می‌شود؛ آن را اکنون به‌صورت امن به فروشگاه بدهید.",
                    "The merchant's API key is shown this once only; hand it to the merchant securely now.",
                )) } }
                p.secret #api-key { (api_key) }
            }
            p { a href="/portal/contracts" { (ctx.t("بازگشت به قراردادها", "Back to contracts")) } }
        },
    )
}

/// The suspend form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SuspendForm {
    csrf: String,
    reason: String,
}

/// Suspends a contracted merchant.
pub async fn suspend_merchant(
    State(portal): State<Portal>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<SuspendForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, Some("contracts"), &form.csrf) {
        return refused;
    }
    let call = Call::post(
        format!("/v1/merchants/{}/suspend", segment(&id)),
        Payload::Json(json!({ "reason": optional(&form.reason) })),
    );
    match portal.gateway.send(&ctx.session, &call).await {
        Ok(_) => done(
            &ctx,
            &portal.sessions,
            "/portal/contracts",
            ctx.t("فروشگاه تعلیق شد.", "The merchant was suspended."),
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/contracts", error),
    }
}
