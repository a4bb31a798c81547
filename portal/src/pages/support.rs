//! Support's desk: mobile changes (S9, R5), remittances from the bank's CSV
//! (S21, R23) and deduction lists (R22).

use axum::Form;
use axum::extract::{Multipart, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::segment;
use crate::api::{ApiError, Call, Payload, Problem};
use crate::format::{
    ascii_digits, digits, grouped, jalali_datetime, jalali_period, money, parse_instant,
};
use crate::i18n::remittance_code;
use crate::layout::{
    check_csrf, csrf_field, done, failed, failed_form, render, require, require_form,
};
use crate::{Ctx, Portal};

/// The support page's three forms.
pub async fn support(ctx: Ctx) -> Response {
    if let Err(answer) = require(&ctx, Some("support")) {
        return answer;
    }
    render(
        &ctx,
        ctx.t("پشتیبانی", "Support"),
        html! {
            div.grid {
                section.card aria-labelledby="mobile-title" {
                    h2 #mobile-title { (ctx.t("تغییر شمارهٔ همراه", "Change a mobile number")) }
                    form.stack method="post" action="/portal/support/mobile" {
                        (csrf_field(&ctx))
                        label { (ctx.t("کد ملی کارمند", "Employee's national ID"))
                            input #mc_national_id name="national_id" type="text" inputmode="numeric" required dir="ltr"; }
                        label { (ctx.t("شمارهٔ همراه تازه", "New mobile number"))
                            input #mc_new_mobile name="new_mobile" type="tel" required dir="ltr" placeholder="09xxxxxxxxx"; }
                        label { (ctx.t("واحد رفاه درخواست‌کننده", "Requesting welfare unit"))
                            input #mc_unit name="requested_by_unit" type="text" required; }
                        label { (ctx.t("شمارهٔ نامه یا مرجع", "Letter or reference number"))
                            input #mc_reference name="reference" type="text" required; }
                        button type="submit" { (ctx.t("ثبت تغییر شماره", "Change the number")) }
                    }
                    p.hint { (ctx.t("نشست‌های پیشین کارمند باطل می‌شود و با شمارهٔ تازه وارد می‌شود.", "The employee's old sessions end; they sign in with the new number.")) }
                }
                section.card aria-labelledby="remit-title" {
                    h2 #remit-title { (ctx.t("ثبت واریزی سازمان", "Record a remittance")) }
                    form.stack method="post" action="/portal/support/remittances" enctype="multipart/form-data" {
                        (csrf_field(&ctx))
                        label { (ctx.t("شناسهٔ سازمان", "Organization ID"))
                            input #r_organization_id name="organization_id" type="text" required dir="ltr" placeholder="ORG-01"; }
                        label { (ctx.t("دورهٔ حقوق (سال-ماه شمسی)", "Salary period (Jalali year-month)"))
                            input #r_period name="period" type="text" required dir="ltr" placeholder="1405-09" pattern="[0-9۰-۹]{4}-[0-9۰-۹]{2}"; }
                        label { (ctx.t("شمارهٔ پیگیری بانک", "Bank reference"))
                            input #r_bank_reference name="bank_reference" type="text" required dir="ltr"; }
                        label { (ctx.t("فایل CSV بانک (ستون‌های national_id,amount به ریال)", "Bank CSV file (columns national_id,amount in rial)"))
                            input #r_file name="file" type="file" accept=".csv,text/csv" required; }
                        button type="submit" { (ctx.t("ثبت واریزی", "Record the remittance")) }
                    }
                }
                section.card aria-labelledby="deductions-title" {
                    h2 #deductions-title { (ctx.t("دریافت فهرست کسورات", "Download a deduction list")) }
                    form.stack method="get" action="/portal/support/deductions" {
                        label { (ctx.t("شناسهٔ سازمان", "Organization ID"))
                            input #d_organization_id name="organization_id" type="text" required dir="ltr" placeholder="ORG-01"; }
                        label { (ctx.t("دورهٔ حقوق (سال-ماه شمسی)", "Salary period (Jalali year-month)"))
                            input #d_period name="period" type="text" required dir="ltr" placeholder="1405-09"; }
                        button type="submit" { (ctx.t("دریافت CSV", "Download CSV")) }
                    }
                }
                section.card aria-labelledby="close-title" {
                    h2 #close-title { (ctx.t("بستن دورهٔ سازمان", "Close an organization's period")) }
                    form.stack method="post" action="/portal/support/periods/close" {
                        (csrf_field(&ctx))
                        label { (ctx.t("شناسهٔ سازمان", "Organization ID"))
                            input #c_organization_id name="organization_id" type="text" required dir="ltr" placeholder="ORG-01"; }
                        label { (ctx.t("دورهٔ حقوق (سال-ماه شمسی)", "Salary period (Jalali year-month)"))
                            input #c_period name="period" type="text" required dir="ltr" placeholder="1405-09" pattern="[0-9۰-۹]{4}-[0-9۰-۹]{2}"; }
                        button type="submit" { (ctx.t("بستن دوره", "Close the period")) }
                    }
                    p.hint { (ctx.t("پس از ثبت واریزی‌ها: اقساط پرداخت‌نشدهٔ دوره معوق می‌شوند و به دورهٔ بعدی منتقل می‌شوند؛ کارمند و ضامن با پیامک باخبر می‌شوند.", "After the remittances: the period's unpaid instalments become overdue and move to a later period; the employee and the guarantor are told by SMS.")) }
                }
            }
        },
    )
}

/// The mobile change form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MobileForm {
    csrf: String,
    national_id: String,
    new_mobile: String,
    requested_by_unit: String,
    reference: String,
}

/// Changes an employee's mobile (R5).
pub async fn change_mobile(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<MobileForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, Some("support"), &form.csrf) {
        return refused;
    }
    let call = Call::post(
        "/v1/support/mobile-changes",
        Payload::Json(json!({
            "national_id": ascii_digits(form.national_id.trim()),
            "new_mobile": ascii_digits(form.new_mobile.trim()),
            "requested_by_unit": form.requested_by_unit.trim(),
            "reference": form.reference.trim(),
        })),
    );
    match portal.gateway.send(&ctx.session, &call).await {
        Ok(_) => done(
            &ctx,
            &portal.sessions,
            "/portal/support",
            ctx.t("شمارهٔ همراه تغییر کرد.", "The mobile number was changed."),
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/support", error),
    }
}

/// The outcome of a remittance.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Remittance {
    remittance_id: String,
    organization_id: String,
    period: String,
    bank_reference: String,
    settled_instalments: i64,
    settled_amount: i64,
    unmatched: Vec<Unmatched>,
    replayed: bool,
}

/// A line the remittance could not use.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Unmatched {
    line: i64,
    national_id: String,
    amount: i64,
    code: String,
}

/// The upload form's fields.
#[derive(Debug, Default)]
struct Upload {
    csrf: String,
    organization_id: String,
    period: String,
    bank_reference: String,
    csv: String,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, String> {
    let mut upload = Upload::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| error.to_string())?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let text = field.text().await.map_err(|error| error.to_string())?;
        match name.as_str() {
            "csrf" => upload.csrf = text,
            "organization_id" => upload.organization_id = text.trim().to_owned(),
            "period" => upload.period = ascii_digits(text.trim()),
            "bank_reference" => upload.bank_reference = text.trim().to_owned(),
            "file" => upload.csv = text,
            _ => {}
        }
    }
    Ok(upload)
}

/// Records a remittance from the bank's CSV and shows the result per line.
pub async fn record_remittance(
    State(portal): State<Portal>,
    ctx: Ctx,
    multipart: Multipart,
) -> Response {
    let title = ctx.t("نتیجهٔ ثبت واریزی", "Remittance result");
    if let Err(answer) = require(&ctx, Some("support")) {
        return answer;
    }
    let upload = match read_upload(multipart).await {
        Ok(upload) => upload,
        Err(detail) => {
            tracing::info!(%detail, "unreadable remittance upload");
            let problem = Problem {
                status: 400,
                code: "upload_unreadable".into(),
                message_fa: "فایل بارگذاری‌شده خوانده نشد؛ فایل CSV با کدگذاری UTF-8 بفرستید."
                    .into(),
                message_en: "The upload could not be read; send a UTF-8 CSV file.".into(),
                violations: Vec::new(),
            };
            return failed_form(
                &ctx,
                &portal.sessions,
                "/portal/support",
                ApiError::Problem(problem),
            );
        }
    };
    if let Err(refused) = check_csrf(&ctx, &upload.csrf) {
        return refused;
    }
    let call = Call::post("/v1/remittances", Payload::Csv(upload.csv))
        .query("organization_id", &upload.organization_id)
        .query("period", &upload.period)
        .query("bank_reference", &upload.bank_reference);
    let result: Remittance = match portal.gateway.json(&ctx.session, &call).await {
        Ok(result) => result,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    render(
        &ctx,
        title,
        html! {
            @if result.replayed {
                div.alert.ok role="status" { (ctx.t(
                    "این شمارهٔ پیگیری پیش‌تر ثبت شده بود؛ نتیجهٔ همان ثبت نشان داده می‌شود و چیزی دوباره تسویه نشد.",
                    "This bank reference was recorded before; its first result is shown and nothing was settled twice.",
                )) }
            } @else {
                div.alert.ok role="status" { (ctx.t("واریزی ثبت شد.", "The remittance was recorded.")) }
            }
            div.card { dl.facts #remittance-summary {
                dt { (ctx.t("سازمان", "Organization")) } dd { (result.organization_id) }
                dt { (ctx.t("دوره", "Period")) } dd { (jalali_period(&result.period, lang)) }
                dt { (ctx.t("شمارهٔ پیگیری بانک", "Bank reference")) } dd { (result.bank_reference) }
                dt { (ctx.t("اقساط تسویه‌شده", "Instalments settled")) } dd #settled-count { (grouped(result.settled_instalments, lang)) }
                dt { (ctx.t("مبلغ تسویه‌شده", "Amount settled")) } dd { (money(result.settled_amount, lang)) }
                dt { (ctx.t("شناسهٔ ثبت", "Remittance ID")) } dd dir="ltr" { (result.remittance_id) }
            } }
            h2 { (ctx.t("سطرهای تطبیق‌نیافته", "Unmatched lines")) }
            @if result.unmatched.is_empty() {
                p #all-matched { (ctx.t("همهٔ سطرها تطبیق یافتند.", "Every line matched.")) }
            } @else {
                div.table-wrap { table #unmatched {
                    thead { tr {
                        th scope="col" { (ctx.t("سطر", "Line")) }
                        th scope="col" { (ctx.t("کد ملی", "National ID")) }
                        th scope="col" { (ctx.t("مبلغ", "Amount")) }
                        th scope="col" { (ctx.t("علت", "Reason")) }
                    } }
                    tbody { @for line in &result.unmatched { tr {
                        td { (grouped(line.line, lang)) }
                        td { (digits(&line.national_id, lang)) }
                        td { (money(line.amount, lang)) }
                        td { (remittance_code(&line.code, lang)) }
                    } } }
                } }
            }
            p { a href="/portal/support" { (ctx.t("بازگشت به پشتیبانی", "Back to support")) } }
        },
    )
}

/// `?organization_id=&period=` of the deduction list download.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeductionQuery {
    organization_id: String,
    period: String,
}

/// Downloads an organization's deduction list of a period as CSV (R22).
pub async fn deductions(
    State(portal): State<Portal>,
    ctx: Ctx,
    Query(query): Query<DeductionQuery>,
) -> Response {
    let title = ctx.t("فهرست کسورات", "Deduction list");
    if !ctx.has_role("contracts")
        && let Err(answer) = require(&ctx, Some("support"))
    {
        return answer;
    }
    let organization = query.organization_id.trim().to_owned();
    let period = ascii_digits(query.period.trim());
    let call = Call::get(format!(
        "/v1/organizations/{}/deductions/{}",
        segment(&organization),
        segment(&period)
    ))
    .accept_csv();
    let response = match portal.gateway.send(&ctx.session, &call).await {
        Ok(response) => response,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, "deduction list cut short");
            return done(
                &ctx,
                &portal.sessions,
                "/portal/support",
                ctx.t("دریافت فهرست ناتمام ماند.", "The download was cut short."),
            );
        }
    };
    let file: String = format!("deductions-{organization}-{period}.csv")
        .chars()
        .filter(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '-' | '.' | '_')
        })
        .collect();
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The audit trail's filters and page (R32).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    subject: String,
    actor: String,
    page_token: String,
}

/// Who did an audited action.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditActor {
    national_id: Option<String>,
    roles: Vec<String>,
}

/// One audited staff action, as `GET /v1/admin/audit` lists it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditEvent {
    at: Option<String>,
    actor: AuditActor,
    action: String,
    subject: String,
    request_id: Option<String>,
    details: serde_json::Value,
}

/// Returns the link to the page after `token` with the same filters.
fn next_audit_page(filter: &AuditFilter, token: &str) -> String {
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [("subject", &filter.subject), ("actor", &filter.actor)] {
        if !value.trim().is_empty() {
            url.append_pair(key, value.trim());
        }
    }
    url.append_pair("page_token", token);
    format!("/portal/support/audit?{}", url.finish())
}

/// Lists the audit trail of staff actions, filtered by subject or actor (R32).
pub async fn audit(
    State(portal): State<Portal>,
    ctx: Ctx,
    Query(filter): Query<AuditFilter>,
) -> Response {
    if let Err(answer) = require(&ctx, Some("support")) {
        return answer;
    }
    let title = ctx.t("رویدادنگاری کارهای کارکنان", "Audit trail of staff actions");
    let call = Call::get("/v1/admin/audit")
        .query("subject", &ascii_digits(filter.subject.trim()))
        .query("actor", &ascii_digits(filter.actor.trim()))
        .query("page_token", &filter.page_token)
        .query("page_size", "50");
    let page: super::employee::Page<AuditEvent> =
        match portal.gateway.json(&ctx.session, &call).await {
            Ok(page) => page,
            Err(error) => return failed(&ctx, &portal.sessions, title, error),
        };
    render(
        &ctx,
        title,
        html! {
            form.card.stack method="get" action="/portal/support/audit" {
                label { (ctx.t("موضوع (کد ملی، شناسهٔ درخواست، ...)", "Subject (national ID, request id, ...)"))
                    input #a_subject name="subject" type="text" dir="ltr" value=(filter.subject); }
                label { (ctx.t("کد ملی انجام‌دهنده", "Actor's national ID"))
                    input #a_actor name="actor" type="text" inputmode="numeric" dir="ltr" value=(filter.actor); }
                button type="submit" { (ctx.t("جست‌وجو", "Search")) }
            }
            @if page.items.is_empty() {
                p.hint { (ctx.t("رویدادی یافت نشد.", "No action found.")) }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th { (ctx.t("زمان", "When")) }
                        th { (ctx.t("انجام‌دهنده", "Actor")) }
                        th { (ctx.t("کار", "Action")) }
                        th { (ctx.t("موضوع", "Subject")) }
                        th { (ctx.t("شناسهٔ درخواست", "Request id")) }
                        th { (ctx.t("جزئیات", "Details")) }
                    } }
                    tbody {
                        @for event in &page.items {
                            tr {
                                td { (event.at.as_deref().and_then(parse_instant).map(|at| jalali_datetime(at, ctx.lang)).unwrap_or_default()) }
                                td dir="ltr" { (event.actor.national_id.as_deref().unwrap_or("-")) " " small { (event.actor.roles.join(", ")) } }
                                td dir="ltr" { (event.action) }
                                td dir="ltr" { (event.subject) }
                                td dir="ltr" { (event.request_id.as_deref().unwrap_or("-")) }
                                td dir="ltr" { code { (event.details.to_string()) } }
                            }
                        }
                    }
                } }
            }
            @if let Some(token) = &page.next_page_token {
                p { a href=(next_audit_page(&filter, token)) { (ctx.t("صفحهٔ بعد", "Next page")) } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r32_the_next_audit_page_keeps_the_filters() {
        let filter = AuditFilter {
            subject: " 0010000011 ".into(),
            actor: String::new(),
            page_token: "old".into(),
        };
        assert_eq!(
            next_audit_page(&filter, "abc-_"),
            "/portal/support/audit?subject=0010000011&page_token=abc-_"
        );
    }
}
