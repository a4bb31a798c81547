//! Search with Persian normalization, filters and stable paging (R27).

use std::collections::HashSet;

use tavana_kit::caller::{Caller, attach};
use tavana_proto::merchant_directory::v1::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn r27_query_with_arabic_kaf_and_yeh_finds_persian_names() {
    let app = spawn_service().await;
    app.add_merchant(in_person("کتاب‌فروشی ققنوس", "تهران"))
        .await;
    app.add_merchant(in_person("فروشگاه علی", "قم")).await;

    assert_eq!(app.names_for("كتاب").await, ["کتاب‌فروشی ققنوس"]);
    assert_eq!(app.names_for("علي").await, ["فروشگاه علی"]);
    // And the other way round: a name stored with Arabic letters.
    app.add_merchant(in_person("كافه نادري", "تهران")).await;
    assert_eq!(app.names_for("کافه نادری").await, ["كافه نادري"]);
}

#[tokio::test]
async fn r27_zwnj_and_spaces_fold_in_names_and_queries() {
    let app = spawn_service().await;
    app.add_merchant(in_person("فروشگاه‌ایران", "تبریز")).await;

    for query in [
        "فروشگاه ایران",
        "فروشگاه‌ایران",
        "  فروشگاه    ایران ",
        "فروشگاه\u{200C} ایران",
    ] {
        assert_eq!(app.names_for(query).await, ["فروشگاه‌ایران"], "{query:?}");
    }
}

#[tokio::test]
async fn r27_persian_and_arabic_indic_digits_match_ascii() {
    let app = spawn_service().await;
    app.add_merchant(in_person("پوشاک ۱۲۳", "مشهد")).await;

    for query in ["۱۲۳", "١٢٣", "123", "پوشاک 123"] {
        assert_eq!(app.names_for(query).await, ["پوشاک ۱۲۳"], "{query:?}");
    }
}

#[tokio::test]
async fn r27_latin_names_match_without_case() {
    let app = spawn_service().await;
    app.add_merchant(online("DigiKala", "digikala.com")).await;

    for query in ["digikala", "DIGIKALA", "Kala", "DigiKala"] {
        assert_eq!(app.names_for(query).await, ["DigiKala"], "{query:?}");
    }
}

#[tokio::test]
async fn r27_diacritics_and_tatweel_are_ignored() {
    let app = spawn_service().await;
    app.add_merchant(in_person("کتابخانه مرکزی", "یزد")).await;

    assert_eq!(app.names_for("كِتَابخانه").await, ["کتابخانه مرکزی"]);
    assert_eq!(app.names_for("کتـــابخانه").await, ["کتابخانه مرکزی"]);
}

#[tokio::test]
async fn r27_like_wildcards_in_a_query_are_literal() {
    let app = spawn_service().await;
    app.add_merchant(online("DigiKala", "digikala.com")).await;

    assert!(app.names_for("%").await.is_empty());
    assert!(app.names_for("d_gi").await.is_empty());
}

#[tokio::test]
async fn r27_control_characters_in_a_query_separate_words_and_never_fail_the_search() {
    let app = spawn_service().await;
    app.add_merchant(in_person("کتاب شهر", "یزد")).await;

    // A NUL ends a string in SQLite's full-text query and is refused in PostgreSQL text.
    assert_eq!(app.names_for("کتاب\u{0}شهر").await, ["کتاب شهر"]);
    assert!(app.names_for("a\u{0}b\u{17}").await.is_empty());
}

async fn filtered(app: &TestApp, request: ListMerchantsRequest) -> Vec<String> {
    let mut names: Vec<String> = app
        .list(ListMerchantsRequest {
            page_size: 100,
            ..request
        })
        .await
        .items
        .into_iter()
        .map(|merchant| merchant.data.unwrap().name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn r27_filters_by_kind_city_province_category_and_purchase_kind() {
    let app = spawn_service().await;
    let mut digikala = online("DigiKala", "digikala.com");
    digikala.categories = vec!["Electronics".into(), "کتاب".into()];
    digikala.supports_instalment = false;
    app.add_merchant(digikala).await;
    let mut shop = in_person("پوشاک شیراز", "شیراز");
    shop.province = Some("فارس".into());
    shop.categories = vec!["پوشاک".into(), "کیف و کفش".into()];
    shop.supports_credit = false;
    shop.supports_instalment = true;
    app.add_merchant(shop).await;
    app.add_merchant(in_person("پوشاک تهران", "تهران")).await;

    let by_kind = filtered(
        &app,
        ListMerchantsRequest {
            kind: MerchantKind::Online as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_kind, ["DigiKala"]);

    let by_city = filtered(
        &app,
        ListMerchantsRequest {
            city: "شيراز".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_city, ["پوشاک شیراز"]);

    let by_province = filtered(
        &app,
        ListMerchantsRequest {
            province: "تهران".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_province, ["پوشاک تهران"]);

    let by_category = filtered(
        &app,
        ListMerchantsRequest {
            category: "electronics".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_category, ["DigiKala"]);

    // Exact: a category is matched whole, never a part of another.
    let part = filtered(
        &app,
        ListMerchantsRequest {
            category: "کیف".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(part.is_empty(), "{part:?}");
    let whole = filtered(
        &app,
        ListMerchantsRequest {
            category: "كيف و كفش".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(whole, ["پوشاک شیراز"]);

    let instalment = filtered(
        &app,
        ListMerchantsRequest {
            purchase_kind: PurchaseKind::Instalment as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(instalment, ["پوشاک شیراز"]);

    let credit = filtered(
        &app,
        ListMerchantsRequest {
            purchase_kind: PurchaseKind::Credit as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(credit, ["DigiKala", "پوشاک تهران"]);

    let combined = filtered(
        &app,
        ListMerchantsRequest {
            q: "پوشاک".into(),
            kind: MerchantKind::InPerson as i32,
            purchase_kind: PurchaseKind::Credit as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(combined, ["پوشاک تهران"]);
}

#[tokio::test]
async fn r27_only_contracted_merchants_are_listed() {
    let app = spawn_service().await;
    app.add_merchant(online("DigiKala", "digikala.com")).await;
    let (suspended, _) = app.add_merchant(online("Bamilo", "bamilo.com")).await;
    app.propose(&manager("R01"), online("Pending Shop", "pending.ir"))
        .await
        .unwrap();

    app.suspend(&suspended).await;

    assert_eq!(app.names_for("").await, ["DigiKala"]);
}

async fn page(app: &TestApp, page_size: u32, token: &str) -> ListMerchantsResponse {
    app.list(ListMerchantsRequest {
        page_size,
        page_token: token.into(),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn r27_paging_is_stable_while_merchants_are_added() {
    let app = spawn_service().await;
    let originals = ["ب", "پ", "ت", "ث", "ج", "چ", "ح"];
    for name in originals {
        app.add_merchant(in_person(&format!("فروشگاه {name}"), "تهران"))
            .await;
    }

    let first = page(&app, 3, "").await;
    assert_eq!(first.items.len(), 3);
    let mut seen: Vec<String> = first
        .items
        .iter()
        .map(|m| m.data.clone().unwrap().name)
        .collect();

    // Merchants added between pages, sorting before, inside and after the cursor.
    for name in ["آ", "پپ", "خ", "ی"] {
        app.add_merchant(in_person(&format!("فروشگاه {name}"), "تهران"))
            .await;
    }

    let mut token = first.next_page_token;
    while !token.is_empty() {
        let next = page(&app, 3, &token).await;
        seen.extend(next.items.iter().map(|m| m.data.clone().unwrap().name));
        token = next.next_page_token;
    }

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no merchant twice: {seen:?}");
    for name in originals {
        let name = format!("فروشگاه {name}");
        assert!(seen.contains(&name), "{name} missing from {seen:?}");
    }
    assert!(
        !seen.contains(&"فروشگاه آ".to_owned()),
        "sorts before the first page"
    );
    assert!(
        seen.contains(&"فروشگاه ی".to_owned()),
        "sorts after the cursor"
    );
    let mut sorted = seen.clone();
    sorted.sort_by_key(|name| tavana_merchant_directory::domain::normalize::normalize_text(name));
    assert_eq!(seen, sorted, "pages keep the order");
}

#[tokio::test]
async fn r27_last_page_has_no_token_and_junk_tokens_are_refused() {
    let app = spawn_service().await;
    app.add_merchant(online("DigiKala", "digikala.com")).await;
    app.add_merchant(online("Bamilo", "bamilo.com")).await;

    let all = page(&app, 2, "").await;
    assert_eq!(all.items.len(), 2);
    assert!(all.next_page_token.is_empty());

    let status = app
        .client
        .clone()
        .list_merchants(attach(
            ListMerchantsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            &Caller::Anonymous,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(problem(&status).code, "page_token_invalid");
}

#[tokio::test]
async fn r27_postgres_has_a_trigram_index_on_the_normalized_name() {
    use sea_orm::{ConnectionTrait, Statement};

    let app = spawn_service().await;
    if !app.db.is_postgres() {
        return;
    }
    let row = app
        .db
        .db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_merchant_name_trgm'",
        ))
        .await
        .unwrap()
        .expect("the trigram index exists");
    let definition: String = row.try_get("", "indexdef").unwrap();
    // GiST rather than GIN: see migration m20261124_000001_index_merchant_names.
    assert!(definition.contains("gist_trgm_ops"), "{definition}");
}
