//! Arrears for staff: closing a period and the overdue list (R29), the unmatched-lines
//! queue with its resolutions (R23).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::employee::Page;
use super::segment;
use crate::api::{Call, Payload};
use crate::format::{ascii_digits, digits, jalali_period, money};
use crate::i18n::remittance_code;
use crate::layout::{
    csrf_field, done, failed, failed_form, forbidden, render, require, require_form,
};
use crate::{Ctx, Portal};

/// The close-a-period form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CloseForm {
    csrf: String,
    organization_id: String,
    period: String,
}

/// The result of a close.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Closed {
    overdue_instalments: i64,
    overdue_amount: i64,
    replayed: bool,
}

/// Support closes an organization's period (R29).
pub async fn close_period(
    State(portal): State<Portal>,
    ctx: Ctx,
    Form(form): Form<CloseForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, Some("support"), &form.csrf) {
        return refused;
    }
    let call = Call::post(
        format!(
            "/v1/organizations/{}/periods/{}/close",
            segment(form.organization_id.trim()),
            segment(&ascii_digits(form.period.trim()))
        ),
        Payload::Json(json!({})),
    );
    match portal.gateway.json::<Closed>(&ctx.session, &call).await {
        Ok(closed) => {
            let text = format!(
                "{} {} · {} {}{}",
                ctx.t(
                    "دوره بسته شد. اقساط معوق:",
                    "Period closed. Overdue instalments:"
                ),
                digits(&closed.overdue_instalments.to_string(), ctx.lang),
                ctx.t("مبلغ معوق:", "overdue amount:"),
                money(closed.overdue_amount, ctx.lang),
                if closed.replayed {
                    ctx.t(" (پیش‌تر بسته شده بود)", " (closed before)")
                } else {
                    ""
                },
            );
            done(&ctx, &portal.sessions, "/portal/support", &text)
        }
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/support", error),
    }
}

/// `?organization_id=` of the overdue list.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OverdueFilter {
    organization_id: String,
}

/// An overdue instalment's employee.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Employee {
    national_id: String,
    full_name: String,
    organization_id: String,
    region_code: String,
}

/// One overdue instalment.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Overdue {
    employee: Employee,
    due_period: String,
    period: String,
    amount: i64,
}

/// The overdue list: all of it to support, the region's own to its finance office (R29).
pub async fn overdue(
    State(portal): State<Portal>,
    ctx: Ctx,
    Query(filter): Query<OverdueFilter>,
) -> Response {
    let title = ctx.t("اقساط معوق", "Overdue instalments");
    let me = match require(&ctx, None) {
        Ok(me) => me,
        Err(answer) => return answer,
    };
    if !me.has_role("support") && !me.has_role("region_finance") {
        return forbidden(&ctx);
    }
    let call = Call::get("/v1/overdue")
        .query("organization_id", &filter.organization_id)
        .query("page_size", "100");
    let list: Page<Overdue> = match portal.gateway.json(&ctx.session, &call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    render(
        &ctx,
        title,
        html! {
            form.inline method="get" action="/portal/overdue" {
                label { (ctx.t("شناسهٔ سازمان", "Organization ID"))
                    input #o_organization_id name="organization_id" type="text" dir="ltr" value=(filter.organization_id); }
                button type="submit" { (ctx.t("نمایش", "Show")) }
            }
            @if list.items.is_empty() {
                p #overdue_empty { (ctx.t("قسط معوقی نیست.", "Nothing is overdue.")) }
            } @else {
                div.table-wrap { table #overdue {
                    thead { tr {
                        th scope="col" { (ctx.t("کارمند", "Employee")) }
                        th scope="col" { (ctx.t("کد ملی", "National ID")) }
                        th scope="col" { (ctx.t("سازمان", "Organization")) }
                        th scope="col" { (ctx.t("منطقه", "Region")) }
                        th scope="col" { (ctx.t("سررسید اصلی", "First due")) }
                        th scope="col" { (ctx.t("انتقال به دورهٔ", "Re-aged to")) }
                        th scope="col" { (ctx.t("مبلغ", "Amount")) }
                    } }
                    tbody { @for item in &list.items { tr {
                        td { (item.employee.full_name) }
                        td dir="ltr" { (digits(&item.employee.national_id, lang)) }
                        td dir="ltr" { (item.employee.organization_id) }
                        td dir="ltr" { (item.employee.region_code) }
                        td { (jalali_period(&item.due_period, lang)) }
                        td { (jalali_period(&item.period, lang)) }
                        td { (money(item.amount, lang)) }
                    } } }
                } }
            }
        },
    )
}

/// One line of the queue.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QueuedLine {
    id: String,
    organization_id: String,
    period: String,
    line: i64,
    national_id: String,
    amount: i64,
    code: String,
}

/// The open lines of the unmatched queue, each with its resolve form (R23).
pub async fn unmatched(State(portal): State<Portal>, ctx: Ctx) -> Response {
    let title = ctx.t("سطرهای تطبیق‌نیافته", "Unmatched lines");
    if let Err(answer) = require(&ctx, Some("support")) {
        return answer;
    }
    let call = Call::get("/v1/unmatched-lines")
        .query("status", "open")
        .query("page_size", "100");
    let list: Page<QueuedLine> = match portal.gateway.json(&ctx.session, &call).await {
        Ok(list) => list,
        Err(error) => return failed(&ctx, &portal.sessions, title, error),
    };
    let lang = ctx.lang;
    render(
        &ctx,
        title,
        html! {
            @if list.items.is_empty() {
                p #unmatched_empty { (ctx.t("سطر بازی در صف نیست.", "No open line in the queue.")) }
            }
            @for line in &list.items {
                section.card aria-label=(line.id) {
                    dl.facts {
                        dt { (ctx.t("سازمان و دوره", "Organization and period")) }
                        dd { (line.organization_id) " · " (jalali_period(&line.period, lang)) }
                        dt { (ctx.t("سطر", "Line")) } dd { (digits(&line.line.to_string(), lang)) }
                        dt { (ctx.t("کد ملی", "National ID")) } dd dir="ltr" { (digits(&line.national_id, lang)) }
                        dt { (ctx.t("مبلغ", "Amount")) } dd { (money(line.amount, lang)) }
                        dt { (ctx.t("علت", "Reason")) } dd { (remittance_code(&line.code, lang)) }
                    }
                    form.stack method="post" action={ "/portal/support/unmatched/" (segment(&line.id)) "/resolve" } {
                        (csrf_field(&ctx))
                        label { (ctx.t("کد ملی کارمند (خالی: همان سطر)", "Employee's national ID (empty: the line's)"))
                            input name="national_id" type="text" inputmode="numeric" dir="ltr"; }
                        label { (ctx.t("دوره (خالی: دورهٔ واریزی)", "Period (empty: the remittance's)"))
                            input name="period" type="text" dir="ltr" placeholder="1405-09"; }
                        label { (ctx.t("توضیح", "Note"))
                            input name="note" type="text" required; }
                        div.actions {
                            button type="submit" name="decision" value="assign" { (ctx.t("تخصیص به کارمند", "Assign to the employee")) }
                            button.secondary type="submit" name="decision" value="return" { (ctx.t("برگشت به سازمان", "Return to the organization")) }
                        }
                    }
                }
            }
        },
    )
}

/// The resolve form of a line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResolveForm {
    csrf: String,
    decision: String,
    national_id: String,
    period: String,
    note: String,
}

/// Assigns a line to an employee and period, or returns it (R23).
pub async fn resolve(
    State(portal): State<Portal>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Response {
    if let Err(refused) = require_form(&ctx, Some("support"), &form.csrf) {
        return refused;
    }
    let optional = |text: &str| {
        let text = ascii_digits(text.trim());
        (!text.is_empty()).then_some(text)
    };
    let body = if form.decision == "return" {
        json!({ "returned_to_organization": true, "note": form.note.trim() })
    } else {
        json!({
            "national_id": optional(&form.national_id),
            "period": optional(&form.period),
            "note": form.note.trim(),
        })
    };
    let call = Call::post(
        format!("/v1/unmatched-lines/{}/resolve", segment(&id)),
        Payload::Json(body),
    );
    match portal.gateway.send(&ctx.session, &call).await {
        Ok(_) => done(
            &ctx,
            &portal.sessions,
            "/portal/support/unmatched",
            ctx.t("سطر رسیدگی شد.", "The line was resolved."),
        ),
        Err(error) => failed_form(&ctx, &portal.sessions, "/portal/support/unmatched", error),
    }
}
