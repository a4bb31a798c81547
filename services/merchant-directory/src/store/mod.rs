//! The merchant directory's database: the only code with queries.

pub mod merchant;
pub mod proposal;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend,
    DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, SqlErr,
    Statement,
};
use tavana_kit::audit::AuditEntry;

use crate::domain::merchant::{MerchantDraft, MerchantStatus, PurchaseKind, join_categories};
use crate::domain::normalize::normalize_text;
use crate::domain::proposal::{Decision, ProposalScope, ProposalStatus};
use crate::domain::search::{MerchantCursor, MerchantSearch, ProposalCursor};
use crate::error::MerchantError;

/// What a new proposal stores beside its description.
#[derive(Clone, Debug)]
pub struct NewProposal {
    /// The proposal id.
    pub id: String,
    /// The proposer's region (R26).
    pub region_code: String,
    /// The proposer's employee id.
    pub proposed_by: String,
    /// When it was filed.
    pub now: DateTime<Utc>,
}

/// What an approval stores.
#[derive(Clone, Debug)]
pub struct Approval {
    /// The new merchant's id.
    pub merchant_id: String,
    /// The hash of its first API key.
    pub api_key_hash: String,
}

/// A page of rows and where the next one starts.
#[derive(Clone, Debug)]
pub struct Page<T, C> {
    /// The rows.
    pub items: Vec<T>,
    /// The start of the next page, when there is one.
    pub next: Option<C>,
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// Escapes `%`, `_` and the escape character for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn contains(text: &str) -> LikeExpr {
    LikeExpr::new(format!("%{}%", like_escape(text))).escape('\\')
}

fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Returns the existing merchant or pending proposal that is the same store as `draft`
/// (R26): same normalized name and city, or same website host.
pub async fn find_duplicate(
    db: &impl ConnectionTrait,
    draft: &MerchantDraft,
) -> Result<Option<MerchantError>, DbErr> {
    let keys = DuplicateKeys::of_draft(draft);
    if let Some(existing) = keys.find_merchant(db).await? {
        return Ok(Some(MerchantError::Duplicate {
            existing_merchant_id: Some(existing),
            existing_proposal_id: None,
        }));
    }
    let pending = keys.pending_same_store().one(db).await?;
    Ok(pending.map(|existing| MerchantError::Duplicate {
        existing_merchant_id: None,
        existing_proposal_id: Some(existing.id),
    }))
}

/// Stores a proposal unless the store is a duplicate (R26).
#[tracing::instrument(skip_all, fields(proposal_id = %new.id, region = %new.region_code))]
pub async fn insert_proposal(
    db: &DatabaseConnection,
    draft: &MerchantDraft,
    new: NewProposal,
) -> Result<proposal::Model, MerchantError> {
    if let Some(duplicate) = find_duplicate(db, draft).await? {
        return Err(duplicate);
    }
    let row = proposal::ActiveModel {
        id: Set(new.id.clone()),
        name: Set(draft.name.clone()),
        name_normalized: Set(draft.name_normalized.clone()),
        kind: Set(draft.kind.as_str().to_owned()),
        website: Set(draft.website.clone()),
        website_host: Set(draft.website_host.clone()),
        city: Set(draft.city.clone()),
        city_normalized: Set(draft.city_normalized.clone()),
        province: Set(draft.province.clone()),
        address: Set(draft.address.clone()),
        categories: Set(join_categories(&draft.categories)),
        supports_credit: Set(draft.supports_credit),
        supports_instalment: Set(draft.supports_instalment),
        contact_phone: Set(draft.contact_phone.clone()),
        status: Set(ProposalStatus::Pending.as_str().to_owned()),
        region_code: Set(new.region_code),
        proposed_by: Set(new.proposed_by),
        reason: Set(None),
        merchant_id: Set(None),
        decided_by: Set(None),
        created_at: Set(new.now.fixed_offset()),
        created_micros: Set(micros(new.now)),
        decided_at: Set(None),
    };
    match proposal::Entity::insert(row).exec(db).await {
        Ok(_) => {}
        // Another manager proposed the same store at the same moment: the partial unique
        // index refused the second row.
        Err(error) if is_unique_violation(&error) => {
            return Err(find_duplicate(db, draft)
                .await?
                .unwrap_or(MerchantError::Duplicate {
                    existing_merchant_id: None,
                    existing_proposal_id: None,
                }));
        }
        Err(error) => return Err(error.into()),
    }
    get_proposal(db, &new.id)
        .await?
        .ok_or_else(|| MerchantError::Internal(anyhow::anyhow!("inserted proposal vanished")))
}

/// Returns one proposal.
pub async fn get_proposal(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<proposal::Model>, DbErr> {
    proposal::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Lists proposals the scope allows, oldest first, keyset-paged by (created_micros, id).
#[tracing::instrument(skip_all)]
pub async fn list_proposals(
    db: &DatabaseConnection,
    scope: &ProposalScope,
    status: Option<ProposalStatus>,
    page_size: u64,
    after: Option<ProposalCursor>,
) -> Result<Page<proposal::Model, ProposalCursor>, DbErr> {
    let mut query = proposal::Entity::find();
    if let ProposalScope::Regions(regions) = scope {
        query = query.filter(proposal::Column::RegionCode.is_in(regions.clone()));
    }
    if let Some(status) = status {
        query = query.filter(proposal::Column::Status.eq(status.as_str()));
    }
    if let Some(after) = after {
        query = query.filter(
            Condition::any()
                .add(proposal::Column::CreatedMicros.gt(after.created_micros))
                .add(
                    Condition::all()
                        .add(proposal::Column::CreatedMicros.eq(after.created_micros))
                        .add(proposal::Column::Id.gt(after.id)),
                ),
        );
    }
    let mut items = query
        .order_by_asc(proposal::Column::CreatedMicros)
        .order_by_asc(proposal::Column::Id)
        .limit(page_size + 1)
        .all(db)
        .await?;
    let next = if items.len() > page_len(page_size) {
        items.truncate(page_len(page_size));
        items.last().map(|last| ProposalCursor {
            created_micros: last.created_micros,
            id: last.id.clone(),
        })
    } else {
        None
    };
    Ok(Page { items, next })
}

async fn decided_error(
    db: &impl ConnectionTrait,
    proposal_id: &str,
) -> Result<MerchantError, DbErr> {
    Ok(match get_proposal(db, proposal_id).await? {
        None => MerchantError::ProposalNotFound,
        Some(proposal) => MerchantError::ProposalAlreadyDecided {
            status: ProposalStatus::parse(&proposal.status)
                .map(ProposalStatus::as_str)
                .unwrap_or("decided"),
        },
    })
}

/// Decides a pending proposal (R26). An approval creates the merchant in the same
/// transaction. The conditional update on the proposal is the transaction's first
/// statement: of two concurrent decisions exactly one finds it pending.
#[tracing::instrument(skip_all, fields(proposal_id = %proposal_id, approve = decision.approve))]
pub async fn decide_proposal(
    db: &DatabaseConnection,
    proposal_id: &str,
    decision: &Decision,
    decided_by: &str,
    now: DateTime<Utc>,
    approval: Option<Approval>,
    audit: &AuditEntry,
) -> Result<(proposal::Model, Option<merchant::Model>), MerchantError> {
    let status = if decision.approve {
        ProposalStatus::Approved
    } else {
        ProposalStatus::Rejected
    };
    let merchant_id = approval
        .as_ref()
        .map(|approval| approval.merchant_id.clone());
    let txn = tavana_kit::db::begin_write(db).await?;
    let updated = proposal::Entity::update_many()
        .col_expr(proposal::Column::Status, Expr::value(status.as_str()))
        .col_expr(
            proposal::Column::Reason,
            Expr::value(decision.reason.clone()),
        )
        .col_expr(
            proposal::Column::MerchantId,
            Expr::value(merchant_id.clone()),
        )
        .col_expr(
            proposal::Column::DecidedBy,
            Expr::value(decided_by.to_owned()),
        )
        .col_expr(proposal::Column::DecidedAt, Expr::value(now.fixed_offset()))
        .filter(proposal::Column::Id.eq(proposal_id))
        .filter(proposal::Column::Status.eq(ProposalStatus::Pending.as_str()))
        .exec(&txn)
        .await?;
    if updated.rows_affected == 0 {
        txn.rollback().await?;
        return Err(decided_error(db, proposal_id).await?);
    }
    let proposal = get_proposal(&txn, proposal_id)
        .await?
        .ok_or(MerchantError::ProposalNotFound)?;

    let merchant = match approval {
        None => None,
        Some(approval) => {
            let row = merchant::ActiveModel {
                id: Set(approval.merchant_id.clone()),
                name: Set(proposal.name.clone()),
                name_normalized: Set(proposal.name_normalized.clone()),
                kind: Set(proposal.kind.clone()),
                website: Set(proposal.website.clone()),
                website_host: Set(proposal.website_host.clone()),
                city: Set(proposal.city.clone()),
                city_normalized: Set(proposal.city_normalized.clone()),
                province: Set(proposal.province.clone()),
                province_normalized: Set(proposal
                    .province
                    .as_deref()
                    .map(normalize_text)
                    .unwrap_or_default()),
                address: Set(proposal.address.clone()),
                categories: Set(proposal.categories.clone()),
                supports_credit: Set(proposal.supports_credit),
                supports_instalment: Set(proposal.supports_instalment),
                contact_phone: Set(proposal.contact_phone.clone()),
                status: Set(MerchantStatus::Contracted.as_str().to_owned()),
                region_code: Set(proposal.region_code.clone()),
                proposal_id: Set(proposal.id.clone()),
                api_key_hash: Set(approval.api_key_hash),
                created_at: Set(now.fixed_offset()),
                created_micros: Set(micros(now)),
                suspended_at: Set(None),
                suspension_reason: Set(None),
            };
            match merchant::Entity::insert(row).exec(&txn).await {
                Ok(_) => {}
                // The same store became a merchant since it was proposed (by another
                // proposal approved meanwhile): R26 refuses a second one.
                Err(error) if is_unique_violation(&error) => {
                    txn.rollback().await?;
                    let draft_keys = DuplicateKeys::of(&proposal);
                    return Err(MerchantError::Duplicate {
                        existing_merchant_id: draft_keys.find_merchant(db).await?,
                        existing_proposal_id: None,
                    });
                }
                Err(error) => return Err(error.into()),
            }
            get_merchant(&txn, &approval.merchant_id).await?
        }
    };
    tavana_kit::audit::record_in(&txn, audit).await?;
    txn.commit().await?;
    Ok((proposal, merchant))
}

/// The columns that identify a store for duplicate detection.
struct DuplicateKeys {
    name_normalized: String,
    city_normalized: String,
    website_host: Option<String>,
}

impl DuplicateKeys {
    fn of_draft(draft: &MerchantDraft) -> DuplicateKeys {
        DuplicateKeys {
            name_normalized: draft.name_normalized.clone(),
            city_normalized: draft.city_normalized.clone(),
            website_host: draft.website_host.clone(),
        }
    }

    fn of(proposal: &proposal::Model) -> DuplicateKeys {
        DuplicateKeys {
            name_normalized: proposal.name_normalized.clone(),
            city_normalized: proposal.city_normalized.clone(),
            website_host: proposal.website_host.clone(),
        }
    }

    async fn find_merchant(&self, db: &impl ConnectionTrait) -> Result<Option<String>, DbErr> {
        Ok(self.same_store().one(db).await?.map(|existing| existing.id))
    }

    /// The pending proposals of this store, oldest first.
    fn pending_same_store(&self) -> Select<proposal::Entity> {
        let mut same_store = Condition::any().add(
            Condition::all()
                .add(proposal::Column::NameNormalized.eq(&self.name_normalized))
                .add(proposal::Column::CityNormalized.eq(&self.city_normalized)),
        );
        if let Some(host) = &self.website_host {
            same_store = same_store.add(proposal::Column::WebsiteHost.eq(host));
        }
        // The status is written into the SQL, not bound: only indexes on pending proposals
        // serve this lookup (partial indexes `WHERE status = 'pending'`), and PostgreSQL
        // cannot use a partial index in a prepared statement's generic plan when the status
        // is a parameter. It switched to that plan after a few lookups and scanned every
        // proposal ever made on each new one.
        let pending = Expr::col(proposal::Column::Status).eq(Expr::cust(format!(
            "'{}'",
            ProposalStatus::Pending.as_str()
        )));
        proposal::Entity::find()
            .filter(pending)
            .filter(same_store)
            .order_by_asc(proposal::Column::CreatedMicros)
    }

    /// The merchants that are this store, oldest first.
    fn same_store(&self) -> Select<merchant::Entity> {
        // The name is matched as the one-value range `BETWEEN name AND name`, not `=`:
        // PostgreSQL's trigram GiST index (the name search's) also answers `=`, and the
        // planner costs it below the unique B-tree on (name, city). With 100,000 similar
        // names that lookup read about 160 index pages (1.1 ms) instead of 3, and every
        // proposal and approval paid it, slower as the directory grew. Only B-trees answer
        // a range.
        let mut same_store = Condition::any().add(
            Condition::all()
                .add(
                    merchant::Column::NameNormalized
                        .between(&self.name_normalized, &self.name_normalized),
                )
                .add(merchant::Column::CityNormalized.eq(&self.city_normalized)),
        );
        if let Some(host) = &self.website_host {
            same_store = same_store.add(merchant::Column::WebsiteHost.eq(host));
        }
        merchant::Entity::find()
            .filter(same_store)
            .order_by_asc(merchant::Column::CreatedMicros)
    }
}

/// Returns one merchant, whatever its status.
pub async fn get_merchant(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<merchant::Model>, DbErr> {
    merchant::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Returns the merchant whose API key hashes to `hash`.
pub async fn find_merchant_by_key_hash(
    db: &DatabaseConnection,
    hash: &str,
) -> Result<Option<merchant::Model>, DbErr> {
    merchant::Entity::find()
        .filter(merchant::Column::ApiKeyHash.eq(hash))
        .one(db)
        .await
}

/// Suspends a merchant (R26), with its audit entry in the same transaction (R32);
/// suspending a suspended merchant changes nothing and is not audited again. Returns the
/// merchant and whether it changed.
#[tracing::instrument(skip_all, fields(merchant_id = %merchant_id))]
pub async fn suspend_merchant(
    db: &DatabaseConnection,
    merchant_id: &str,
    reason: Option<String>,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<(merchant::Model, bool), MerchantError> {
    let txn = tavana_kit::db::begin_write(db).await?;
    let updated = merchant::Entity::update_many()
        .col_expr(
            merchant::Column::Status,
            Expr::value(MerchantStatus::Suspended.as_str()),
        )
        .col_expr(
            merchant::Column::SuspendedAt,
            Expr::value(now.fixed_offset()),
        )
        .col_expr(merchant::Column::SuspensionReason, Expr::value(reason))
        .filter(merchant::Column::Id.eq(merchant_id))
        .filter(merchant::Column::Status.eq(MerchantStatus::Contracted.as_str()))
        .exec(&*txn)
        .await?;
    let merchant = get_merchant(&*txn, merchant_id)
        .await?
        .ok_or(MerchantError::MerchantNotFound)?;
    let changed = updated.rows_affected > 0;
    if changed {
        tavana_kit::audit::record_in(&*txn, audit).await?;
    }
    txn.commit().await?;
    Ok((merchant, changed))
}

/// Replaces a merchant's key hash; the old key stops working at once.
#[tracing::instrument(skip_all, fields(merchant_id = %merchant_id))]
pub async fn rotate_key(
    db: &DatabaseConnection,
    merchant_id: &str,
    new_hash: &str,
) -> Result<(), MerchantError> {
    let update = merchant::Entity::update_many()
        .col_expr(
            merchant::Column::ApiKeyHash,
            Expr::value(new_hash.to_owned()),
        )
        .filter(merchant::Column::Id.eq(merchant_id))
        .into_query();
    if tavana_kit::db::execute_write(db, &update)
        .await?
        .rows_affected()
        == 0
    {
        return Err(MerchantError::MerchantNotFound);
    }
    Ok(())
}

/// The most name candidates a SQLite search reads through the name index. A query with
/// more matches is common enough that walking the listing in name order reaches a page of
/// them sooner than reading and sorting all of its candidates.
const MAX_NAME_CANDIDATES: usize = 300;

/// The trigram index finds nothing for a query shorter than one trigram.
const MIN_INDEXED_QUERY_CHARS: usize = 3;

/// Merges SQLite's name index (R27) into one segment; nothing on PostgreSQL.
///
/// Every write transaction adds a segment to an FTS5 index, and FTS5 merges segments only
/// four at a time, so a directory built by many approvals keeps a dozen of them, and every
/// search probes each segment for each trigram of its query. With 100,000 merchants
/// approved one by one: 13 segments, 0.48 ms per search in SQLite; one segment, 0.18 ms.
/// Merging 100,000 names takes about 80 ms, and when the index is already one segment,
/// FTS5 writes nothing.
pub async fn compact_name_index(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    let txn = tavana_kit::db::begin_write(db).await?;
    txn.execute_unprepared(
        "INSERT INTO merchant_name_search (merchant_name_search) VALUES ('optimize')",
    )
    .await?;
    txn.commit().await
}

/// Returns `text` as an FTS5 phrase: one quoted string, in which only `"` is special.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Returns the ids of every merchant whose normalized name may contain `q` (R27), when
/// SQLite's name index narrows them to at most [`MAX_NAME_CANDIDATES`]; `None` when the
/// search should walk the listing in name order instead.
///
/// The candidates are a superset: the index folds case, and it may hold the old name of
/// a merchant renamed a moment ago. The search still checks the name of each.
/// PostgreSQL needs none of this: its planner chooses between the trigram index and the
/// ordered listing from its statistics, which SQLite does not keep for an FTS5 table.
async fn name_candidates(db: &DatabaseConnection, q: &str) -> Result<Option<Vec<String>>, DbErr> {
    let indexed = db.get_database_backend() == DbBackend::Sqlite
        && q.chars().count() >= MIN_INDEXED_QUERY_CHARS;
    if !indexed {
        return Ok(None);
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT merchant_id FROM merchant_name_search \
             WHERE merchant_name_search MATCH ? LIMIT ?",
            [
                fts_phrase(q).into(),
                i64::try_from(MAX_NAME_CANDIDATES + 1)
                    .unwrap_or(i64::MAX)
                    .into(),
            ],
        ))
        .await?;
    if rows.len() > MAX_NAME_CANDIDATES {
        return Ok(None);
    }
    rows.iter()
        .map(|row| row.try_get::<String>("", "merchant_id"))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Searches contracted merchants (R27), ordered by (normalized name, id) and keyset-paged
/// on the same pair, so a page boundary stays put while merchants are added.
///
/// A name query is matched by `name_normalized LIKE '%q%'` in every case; a name index
/// only narrows the rows that are checked (see [`name_candidates`]).
#[tracing::instrument(skip_all)]
pub async fn search_merchants(
    db: &DatabaseConnection,
    search: &MerchantSearch,
) -> Result<Page<merchant::Model, MerchantCursor>, DbErr> {
    let candidates = name_candidates(db, &search.q).await?;
    if candidates.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Page {
            items: Vec::new(),
            next: None,
        });
    }
    let mut items = search_query(search, candidates).all(db).await?;
    let next = if items.len() > page_len(search.page_size) {
        items.truncate(page_len(search.page_size));
        items.last().map(|last| MerchantCursor {
            name: last.name_normalized.clone(),
            id: last.id.clone(),
        })
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Returns `merchant.status = status` behind a unary `+`, which keeps SQLite from serving
/// it through `ix_merchant_status_name_id`. Given a list of candidate ids, SQLite would
/// otherwise walk every contracted merchant in name order and check each against the
/// list, rather than read the few candidates by id and sort them.
fn status_not_from_an_index(status: &str) -> Expr {
    Expr::cust_with_exprs(
        "+? = ?",
        [
            Expr::col((merchant::Entity, merchant::Column::Status)),
            Expr::val(status),
        ],
    )
}

/// Returns the query of one page of `search` (and one row more, to tell whether another
/// page follows), limited to `candidates` when the name index found them.
fn search_query(
    search: &MerchantSearch,
    candidates: Option<Vec<String>>,
) -> Select<merchant::Entity> {
    let contracted = MerchantStatus::Contracted.as_str();
    let mut query = match candidates {
        None => merchant::Entity::find().filter(merchant::Column::Status.eq(contracted)),
        Some(candidates) => merchant::Entity::find()
            .filter(merchant::Column::Id.is_in(candidates))
            .filter(status_not_from_an_index(contracted)),
    };
    if !search.q.is_empty() {
        query = query.filter(merchant::Column::NameNormalized.like(contains(&search.q)));
    }
    if let Some(kind) = search.kind {
        query = query.filter(merchant::Column::Kind.eq(kind.as_str()));
    }
    if let Some(city) = &search.city {
        query = query.filter(merchant::Column::CityNormalized.eq(city));
    }
    if let Some(province) = &search.province {
        query = query.filter(merchant::Column::ProvinceNormalized.eq(province));
    }
    if let Some(category) = &search.category {
        // Exact category: the stored column is `|a|b|`, so `|category|` matches one whole
        // category and never a part of another.
        let whole = format!("|{category}|");
        query = query.filter(merchant::Column::Categories.like(contains(&whole)));
    }
    match search.purchase_kind {
        Some(PurchaseKind::Credit) => {
            query = query.filter(merchant::Column::SupportsCredit.eq(true));
        }
        Some(PurchaseKind::Instalment) => {
            query = query.filter(merchant::Column::SupportsInstalment.eq(true));
        }
        None => {}
    }
    if let Some(after) = &search.after {
        query = query.filter(
            Condition::any()
                .add(merchant::Column::NameNormalized.gt(after.name.clone()))
                .add(
                    Condition::all()
                        .add(merchant::Column::NameNormalized.eq(after.name.clone()))
                        .add(merchant::Column::Id.gt(after.id.clone())),
                ),
        );
    }
    query
        .order_by_asc(merchant::Column::NameNormalized)
        .order_by_asc(merchant::Column::Id)
        .limit(search.page_size + 1)
}

/// A page size as a length: sizes are at most 100 (checked at the edge), so the
/// conversion saturates only on a 16-bit target.
fn page_len(page_size: u64) -> usize {
    usize::try_from(page_size).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use sea_orm::{TransactionTrait, Value};
    use tavana_kit::testing::{test_db, test_uses_postgres};
    use tavana_merchant_directory_migration::Migrator;

    use super::*;

    /// The lines of an `EXPLAIN` (PostgreSQL: column `QUERY PLAN`) or `EXPLAIN QUERY PLAN`
    /// (SQLite: column `detail`).
    fn plan_steps(plan: &[sea_orm::QueryResult], column: &str) -> Vec<String> {
        plan.iter()
            .map(|step| step.try_get::<String>("", column).unwrap())
            .collect()
    }

    #[test]
    fn fts_phrase_quotes_the_query_and_doubles_its_quotes() {
        assert_eq!(fts_phrase("کتاب"), "\"کتاب\"");
        assert_eq!(fts_phrase("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(fts_phrase("a* OR b:c ^d"), "\"a* OR b:c ^d\"");
    }

    #[tokio::test]
    async fn r26_duplicate_lookup_reads_b_trees_not_the_trigram_index_on_postgres() {
        if !test_uses_postgres() {
            return;
        }
        let test_db = test_db::<Migrator>().await;
        let keys = DuplicateKeys {
            name_normalized: "فروشگاه کتاب 7".into(),
            city_normalized: "تهران".into(),
            website_host: Some("shop-7.example".into()),
        };
        let mut statement = keys.same_store().build(DbBackend::Postgres);
        statement.sql = format!("EXPLAIN {}", statement.sql);
        let txn = test_db.db.begin().await.unwrap();
        // An empty table is scanned whatever the query; without that plan the planner
        // shows which index it would read.
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .unwrap();

        let plan = txn.query_all_raw(statement).await.unwrap();

        let steps = plan_steps(&plan, "QUERY PLAN");
        assert!(
            steps.iter().any(|step| step.contains("Index Scan on")),
            "{steps:?}"
        );
        assert!(
            !steps
                .iter()
                .any(|step| step.contains("ix_merchant_name_trgm")),
            "{steps:?}"
        );
    }

    #[tokio::test]
    async fn r26_pending_proposal_lookup_uses_the_partial_index_in_a_generic_plan() {
        if !test_uses_postgres() {
            return;
        }
        let test_db = test_db::<Migrator>().await;
        let keys = DuplicateKeys {
            name_normalized: "فروشگاه کتاب 7".into(),
            city_normalized: "تهران".into(),
            website_host: None,
        };
        let statement = keys.pending_same_store().build(DbBackend::Postgres);
        let arguments: Vec<String> = statement
            .values
            .iter()
            .flat_map(|values| values.0.iter())
            .map(|value| match value {
                Value::String(Some(text)) => format!("'{}'", text.replace('\'', "''")),
                other => panic!("unexpected argument {other:?}"),
            })
            .collect();
        let txn = test_db.db.begin().await.unwrap();
        for setting in [
            "SET LOCAL plan_cache_mode = force_generic_plan",
            "SET LOCAL enable_seqscan = off",
        ] {
            txn.execute_unprepared(setting).await.unwrap();
        }
        txn.execute_unprepared(&format!("PREPARE pending_lookup AS {}", statement.sql))
            .await
            .unwrap();

        let plan = txn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("EXPLAIN EXECUTE pending_lookup({})", arguments.join(", ")),
            ))
            .await
            .unwrap();

        let steps = plan_steps(&plan, "QUERY PLAN");
        assert!(
            steps
                .iter()
                .any(|step| step.contains("ux_merchant_proposal_pending_name_city")),
            "{steps:?}"
        );
    }

    #[tokio::test]
    async fn r27_sqlite_reads_name_candidates_by_id_and_sorts_them() {
        if test_uses_postgres() {
            return;
        }
        let test_db = test_db::<Migrator>().await;
        let search = MerchantSearch {
            q: "کتاب".into(),
            page_size: 20,
            ..MerchantSearch::default()
        };
        let candidates = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut statement = search_query(&search, Some(candidates)).build(DbBackend::Sqlite);
        statement.sql = format!("EXPLAIN QUERY PLAN {}", statement.sql);

        let plan = test_db.db.query_all_raw(statement).await.unwrap();

        let steps = plan_steps(&plan, "detail");
        assert!(
            steps.iter().any(|step| step.contains("(id=?)")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.contains("TEMP B-TREE FOR ORDER BY")),
            "{steps:?}"
        );
        assert!(
            !steps
                .iter()
                .any(|step| step.contains("ix_merchant_status_name_id")),
            "{steps:?}"
        );
    }
}
