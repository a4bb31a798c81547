//! The name index behind search (R27): trigram GiST on PostgreSQL, FTS5 trigram on
//! SQLite. A search through it finds exactly what a plain substring scan of the
//! normalized names finds, in the same order and pages, and it follows every change of a
//! merchant row.

use std::sync::Arc;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement,
};
use tavana_kit::store::MemoryStore;
use tavana_kit::testing::test_db;
use tavana_merchant_directory::Settings;
use tavana_merchant_directory::domain::normalize::normalize_text;
use tavana_merchant_directory::store::merchant;
use tavana_merchant_directory_migration::Migrator;
use tavana_proto::merchant_directory::v1::*;

use crate::helpers::*;

/// A service without a listing cache (these tests change rows behind its back) and
/// without its own merges of the name index (a test merges it when it means to).
async fn spawn_uncached() -> TestApp {
    spawn_with_settings(
        Arc::new(test_db::<Migrator>().await),
        Arc::new(MemoryStore::new()),
        Settings {
            cache_ttl_seconds: 0,
            name_index_upkeep_seconds: 0,
            ..Settings::default()
        },
    )
    .await
}

fn row(id: &str, name: &str) -> merchant::ActiveModel {
    let now = chrono::Utc::now().fixed_offset();
    merchant::ActiveModel {
        id: Set(id.into()),
        name: Set(name.into()),
        name_normalized: Set(normalize_text(name)),
        kind: Set("online".into()),
        website: Set(Some(format!("https://{id}.example"))),
        website_host: Set(Some(format!("{id}.example"))),
        city: Set(None),
        city_normalized: Set(String::new()),
        province: Set(None),
        province_normalized: Set(String::new()),
        address: Set(None),
        categories: Set("|کتاب|".into()),
        supports_credit: Set(true),
        supports_instalment: Set(true),
        contact_phone: Set("02100000000".into()),
        status: Set("contracted".into()),
        region_code: Set("R01".into()),
        proposal_id: Set(format!("p-{id}")),
        api_key_hash: Set(format!("hash-{id}")),
        created_at: Set(now),
        created_micros: Set(now.timestamp_micros()),
        suspended_at: Set(None),
        suspension_reason: Set(None),
    }
}

/// Writes contracted merchants straight into the database, `(id, name)` each.
async fn insert_rows(app: &TestApp, merchants: &[(String, String)]) {
    for chunk in merchants.chunks(200) {
        merchant::Entity::insert_many(chunk.iter().map(|(id, name)| row(id, name)))
            .exec(&app.db.db)
            .await
            .unwrap();
    }
}

/// Renames a merchant straight in the database, bypassing the service.
async fn rename_row(app: &TestApp, id: &str, name: &str) {
    merchant::Entity::update_many()
        .col_expr(merchant::Column::Name, Expr::value(name))
        .col_expr(
            merchant::Column::NameNormalized,
            Expr::value(normalize_text(name)),
        )
        .filter(merchant::Column::Id.eq(id))
        .exec(&app.db.db)
        .await
        .unwrap();
}

/// Every page of a search, in order, as names.
async fn all_pages(app: &TestApp, q: &str, page_size: u32) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .list(ListMerchantsRequest {
                q: q.into(),
                page_size,
                page_token: token,
                ..Default::default()
            })
            .await;
        names.extend(page.items.into_iter().map(|m| m.data.unwrap().name));
        if page.next_page_token.is_empty() {
            return names;
        }
        token = page.next_page_token;
    }
}

/// What the search finds by definition: the names whose normalized form contains the
/// normalized query, ordered by (normalized name, id).
fn expected(merchants: &[(String, String)], q: &str) -> Vec<String> {
    let q = normalize_text(q);
    let mut found: Vec<(String, &String, &String)> = merchants
        .iter()
        .filter(|(_, name)| normalize_text(name).contains(&q))
        .map(|(id, name)| (normalize_text(name), id, name))
        .collect();
    found.sort();
    found.into_iter().map(|(_, _, name)| name.clone()).collect()
}

fn numbered(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("m{i:03}"), (*name).to_owned()))
        .collect()
}

const NAMES: [&str; 22] = [
    "کتاب‌فروشی ققنوس",
    "كتابفروشي نادري",
    "فروشگاه کتاب ۱۲۳",
    "فروشگاه کتاب 1234",
    "فروشگاه پوشاک ١٢",
    "کتـــابخانه مرکزی",
    "کِتاب سرا",
    "DigiKala",
    "Digi_Kala Market",
    "100% Organic",
    "Half 50%off",
    r"Back\Slash Books",
    r"Double\\Slash",
    "Say \"Cheese\" Studio",
    "O'Reilly Books",
    "AND OR NOT",
    "NEAR(shop books)",
    "star* shop",
    "^caret col:on",
    "a",
    "ab",
    "ک",
];

const QUERIES: [&str; 38] = [
    "",
    "a",
    "ab",
    "ک",
    "کت",
    "کتاب",
    "كتاب",
    "کتاب فروشی",
    "کتاب\u{200C}فروشی",
    "فروشگاه",
    "فروشگاه کتاب",
    "۱۲۳",
    "123",
    "12",
    "١٢",
    "کتابخانه",
    "digi",
    "DIGI",
    "i_k",
    "_",
    "%",
    "100%",
    "0%o",
    r"\",
    r"\s",
    r"k\s",
    r"\\",
    "\"",
    "\"cheese\"",
    "'",
    "o'r",
    "and or",
    "near(",
    "*",
    "r* s",
    "^c",
    "col:",
    "nothing like this",
];

#[tokio::test]
async fn r27_indexed_search_finds_what_a_substring_scan_finds() {
    let app = spawn_uncached().await;
    let merchants = numbered(&NAMES);
    insert_rows(&app, &merchants).await;

    for q in QUERIES {
        assert_eq!(
            all_pages(&app, q, 100).await,
            expected(&merchants, q),
            "{q:?}"
        );
        // Small pages: the same rows, in the same order, across cursors.
        assert_eq!(
            all_pages(&app, q, 2).await,
            expected(&merchants, q),
            "{q:?}"
        );
    }
}

#[tokio::test]
async fn r27_a_name_shared_by_many_merchants_is_searched_in_order_and_pages() {
    // More merchants share «فروشگاه» than the SQLite search reads through its index: that
    // query walks the listing in name order, the rarer ones read their candidates.
    let app = spawn_uncached().await;
    let merchants: Vec<(String, String)> = (0..420)
        .map(|i| {
            let word = ["کتاب", "پوشاک", "عطر"][i % 3];
            (format!("m{i:03}"), format!("فروشگاه {word} {i}"))
        })
        .collect();
    insert_rows(&app, &merchants).await;

    for q in ["فروشگاه", "فروشگاه کتاب", "عطر 1", "کتاب 41", "ه 4", "419"]
    {
        assert_eq!(
            all_pages(&app, q, 100).await,
            expected(&merchants, q),
            "{q:?}"
        );
    }
    assert_eq!(
        all_pages(&app, "پوشاک", 7).await,
        expected(&merchants, "پوشاک"),
        "pages of 7"
    );
}

#[tokio::test]
async fn r27_a_renamed_merchant_is_found_by_its_new_name_only() {
    let app = spawn_uncached().await;
    insert_merchant_row(&app, "m-1", "کتاب‌فروشی ققنوس", "qoqnoos.ir").await;
    assert_eq!(app.names_for("ققنوس").await, ["کتاب‌فروشی ققنوس"]);

    rename_row(&app, "m-1", "نشر سیمرغ").await;

    assert!(app.names_for("ققنوس").await.is_empty());
    assert_eq!(app.names_for("سیمرغ").await, ["نشر سیمرغ"]);
    assert_eq!(app.names_for("سيمرغ").await, ["نشر سیمرغ"]);
}

#[tokio::test]
async fn r27_suspension_and_a_new_contract_take_a_merchant_out_of_search_and_back() {
    let app = spawn_uncached().await;
    let (merchant_id, _) = app.add_merchant(online("DigiKala", "digikala.com")).await;
    app.add_merchant(online("Digistyle", "digistyle.com")).await;
    assert_eq!(app.names_for("digi").await, ["DigiKala", "Digistyle"]);

    app.suspend(&merchant_id).await;
    assert_eq!(app.names_for("digi").await, ["Digistyle"]);
    assert!(app.names_for("digikala").await.is_empty());

    set_status_row(&app, &merchant_id, "contracted").await;
    assert_eq!(app.names_for("digi").await, ["DigiKala", "Digistyle"]);
    assert_eq!(app.names_for("digikala").await, ["DigiKala"]);
}

#[tokio::test]
async fn r27_a_deleted_merchant_leaves_search_and_the_name_index() {
    let app = spawn_uncached().await;
    insert_merchant_row(&app, "m-1", "DigiKala", "digikala.com").await;
    insert_merchant_row(&app, "m-2", "Digistyle", "digistyle.com").await;

    merchant::Entity::delete_by_id("m-1".to_owned())
        .exec(&app.db.db)
        .await
        .unwrap();

    assert_eq!(app.names_for("digi").await, ["Digistyle"]);
    if !app.db.is_postgres() {
        let left = sqlite_count(
            &app,
            "SELECT count(*) AS n FROM merchant_name_search WHERE merchant_id = 'm-1'",
        )
        .await;
        assert_eq!(left, 0);
    }
}

#[tokio::test]
async fn r27_sqlite_has_fts5_and_a_trigram_name_index() {
    let app = spawn_uncached().await;
    if app.db.is_postgres() {
        return;
    }
    let sqlite = |sql: &str| Statement::from_string(sea_orm::DbBackend::Sqlite, sql);

    let fts5 = app
        .db
        .db
        .query_one_raw(sqlite(
            "SELECT sqlite_compileoption_used('ENABLE_FTS5') AS fts5",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fts5.try_get::<i64>("", "fts5").unwrap(), 1);

    let definition = app
        .db
        .db
        .query_one_raw(sqlite(
            "SELECT sql FROM sqlite_master WHERE name = 'merchant_name_search'",
        ))
        .await
        .unwrap()
        .expect("the name index exists");
    let definition: String = definition.try_get("", "sql").unwrap();
    assert!(definition.contains("fts5"), "{definition}");
    assert!(definition.contains("trigram"), "{definition}");
}

/// The count `n` that a SQLite query returns.
async fn sqlite_count(app: &TestApp, sql: &str) -> i64 {
    app.db
        .db
        .query_one_raw(Statement::from_string(sea_orm::DbBackend::Sqlite, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

/// How many segments SQLite's name index has (FTS5 keeps one row per segment and leaf
/// page in its `_idx` table).
async fn name_index_segments(app: &TestApp) -> i64 {
    sqlite_count(
        app,
        "SELECT count(DISTINCT segid) AS n FROM merchant_name_search_idx",
    )
    .await
}

#[tokio::test]
async fn r27_the_compacted_name_index_finds_what_it_found_in_segments() {
    let app = spawn_uncached().await;
    let mut merchants = numbered(&NAMES);
    // One write each, as approvals come: every one adds a segment to SQLite's index.
    for (id, name) in &merchants {
        insert_merchant_row(&app, id, name, &format!("{id}.example")).await;
    }
    // A rename and a removal leave deleted entries for the merge to drop.
    rename_row(&app, "m000", "نشر سیمرغ").await;
    merchants[0].1 = "نشر سیمرغ".to_owned();
    merchant::Entity::delete_by_id("m001".to_owned())
        .exec(&app.db.db)
        .await
        .unwrap();
    merchants.remove(1);
    let sqlite = !app.db.is_postgres();
    if sqlite {
        assert!(name_index_segments(&app).await > 1);
    }

    tavana_merchant_directory::store::compact_name_index(&app.db.db)
        .await
        .unwrap();

    if sqlite {
        assert_eq!(name_index_segments(&app).await, 1);
    }
    for q in QUERIES.iter().chain(&["سیمرغ", "ققنوس", "نادري"]) {
        assert_eq!(
            all_pages(&app, q, 100).await,
            expected(&merchants, q),
            "{q:?}"
        );
    }
    // Once compact, it stays so, and a new merchant is found at once.
    tavana_merchant_directory::store::compact_name_index(&app.db.db)
        .await
        .unwrap();
    insert_merchant_row(&app, "m100", "کتاب‌سرای تازه", "new.example").await;
    merchants.push(("m100".to_owned(), "کتاب‌سرای تازه".to_owned()));
    for q in ["کتاب", "تازه", "سرای"] {
        assert_eq!(
            all_pages(&app, q, 100).await,
            expected(&merchants, q),
            "{q:?}"
        );
    }
}
