//! The merchant directory everyone can search (S7, R27). With htmx the
//! results follow the typing; without it, the form submits as usual.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::employee::Page;
use crate::api::Call;
use crate::i18n::merchant_kind;
use crate::layout::{problem_box, render};
use crate::{Ctx, Portal};

/// The directory's filters, passed on to `GET /v1/merchants`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filters {
    q: String,
    kind: String,
    city: String,
    province: String,
    category: String,
    purchase_kind: String,
    page_token: String,
}

/// A contracted merchant.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Merchant {
    name: String,
    kind: String,
    website: Option<String>,
    city: Option<String>,
    province: Option<String>,
    address: Option<String>,
    categories: Vec<String>,
    supports_credit: bool,
    supports_instalment: bool,
}

fn next_link(filters: &Filters, token: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("q", &filters.q),
        ("kind", &filters.kind),
        ("city", &filters.city),
        ("province", &filters.province),
        ("category", &filters.category),
        ("purchase_kind", &filters.purchase_kind),
    ] {
        if !value.is_empty() {
            query.append_pair(key, value);
        }
    }
    query.append_pair("page_token", token);
    format!("/portal/merchants?{}", query.finish())
}

fn results(
    ctx: &Ctx,
    filters: &Filters,
    answer: Result<Page<Merchant>, crate::api::ApiError>,
) -> Markup {
    let lang = ctx.lang;
    html! {
        div #results aria-live="polite" {
            @match answer {
                Err(crate::api::ApiError::Problem(problem)) => { (problem_box(&problem, lang)) }
                Err(crate::api::ApiError::SignedOut) => {}
                Ok(page) => {
                    @if page.items.is_empty() {
                        p { (ctx.t("فروشگاهی با این مشخصات پیدا نشد.", "No merchant matches.")) }
                    }
                    div.grid {
                        @for merchant in &page.items {
                            article.card.merchant {
                                h2 { (merchant.name) }
                                p { span.badge { (merchant_kind(&merchant.kind, lang)) } " "
                                    @if merchant.supports_credit { span.badge { (lang.pick("نقدی یک‌ماهه", "One-month credit")) } " " }
                                    @if merchant.supports_instalment { span.badge { (lang.pick("اقساطی", "Instalments")) } } }
                                @if let Some(website) = merchant.website.as_deref().filter(|w| !w.is_empty()) {
                                    p { a href=(website) rel="noopener nofollow" dir="ltr" { (website) } }
                                }
                                @if merchant.city.is_some() || merchant.province.is_some() {
                                    p { (merchant.city.clone().unwrap_or_default())
                                        @if let Some(province) = &merchant.province { "، " (province) } }
                                }
                                @if let Some(address) = &merchant.address { p.hint { (address) } }
                                @if !merchant.categories.is_empty() {
                                    p.hint { (merchant.categories.join(lang.pick("، ", ", "))) }
                                }
                            }
                        }
                    }
                    @if let Some(token) = page.next_page_token.as_deref().filter(|t| !t.is_empty()) {
                        p { a href=(next_link(filters, token)) { (ctx.t("صفحهٔ بعد", "Next page")) } }
                    }
                }
            }
        }
    }
}

fn option(value: &str, label: &str, selected: &str) -> Markup {
    html! { option value=(value) selected[value == selected] { (label) } }
}

/// The directory with search and filters.
pub async fn directory(
    State(portal): State<Portal>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let call = Call::get("/v1/merchants")
        .query("q", &filters.q)
        .query("kind", &filters.kind)
        .query("city", &filters.city)
        .query("province", &filters.province)
        .query("category", &filters.category)
        .query("purchase_kind", &filters.purchase_kind)
        .query("page_token", &filters.page_token)
        .query("page_size", "24");
    let answer = portal.gateway.json_anonymous::<Page<Merchant>>(&call).await;
    let found = results(&ctx, &filters, answer);
    // htmx asks for the results only.
    if headers.contains_key("hx-request") && !headers.contains_key("hx-history-restore-request") {
        return Html(found.into_string()).into_response();
    }
    let lang = ctx.lang;
    render(
        &ctx,
        ctx.t("فروشگاه‌های طرف قرارداد", "Contracted merchants"),
        html! {
            form.filters.card role="search" method="get" action="/portal/merchants"
                hx-get="/portal/merchants" hx-target="#results" hx-swap="outerHTML" hx-push-url="true"
                hx-trigger="submit, input changed delay:400ms from:input, change from:select" {
                label { (ctx.t("جست‌وجوی نام", "Search by name")) input #q name="q" type="search" value=(filters.q); }
                label { (ctx.t("نوع فروشگاه", "Kind"))
                    select #kind name="kind" {
                        (option("", lang.pick("همه", "All"), &filters.kind))
                        (option("online", &merchant_kind("online", lang), &filters.kind))
                        (option("in_person", &merchant_kind("in_person", lang), &filters.kind))
                    }
                }
                label { (ctx.t("نوع خرید", "Purchase kind"))
                    select #purchase_kind name="purchase_kind" {
                        (option("", lang.pick("همه", "All"), &filters.purchase_kind))
                        (option("credit", lang.pick("نقدی یک‌ماهه", "One-month credit"), &filters.purchase_kind))
                        (option("instalment", lang.pick("اقساطی", "Instalments"), &filters.purchase_kind))
                    }
                }
                label { (ctx.t("شهر", "City")) input #city name="city" type="text" value=(filters.city); }
                label { (ctx.t("استان", "Province")) input #province name="province" type="text" value=(filters.province); }
                label { (ctx.t("دسته", "Category")) input #category name="category" type="text" value=(filters.category); }
                button type="submit" { (ctx.t("جست‌وجو", "Search")) }
            }
            (found)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn the_next_page_link_keeps_the_filters() {
        let filters = Filters {
            q: "کتاب".into(),
            kind: "online".into(),
            ..Filters::default()
        };
        let link = next_link(&filters, "abc");
        assert!(link.starts_with("/portal/merchants?q=%DA%A9"));
        assert!(link.ends_with("&kind=online&page_token=abc"));
    }

    #[test]
    fn both_languages_name_the_kinds() {
        assert_eq!(merchant_kind("online", Lang::En), "Online shop");
    }
}
