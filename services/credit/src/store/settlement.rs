//! Settlement of purchases (R18) and reconciliation (R31).

use sea_orm::sea_query::Order;
use sea_orm::{JoinType, PaginatorTrait};

use super::*;

/// What R31's reconciliation reads of one purchase.
#[derive(Clone, Debug)]
pub struct LedgerRow {
    /// The purchase.
    pub id: String,
    /// Its amount.
    pub amount: i64,
    /// What refunds took back of it.
    pub refunded_amount: i64,
    /// Its stored schedule (JSON).
    pub schedule: String,
    /// Its schedule version (R20).
    pub schedule_version: i32,
    /// The buyer's national ID.
    pub national_id: String,
}

/// R31's digest of a range of purchases as the database sums their stored terms.
#[derive(Clone, Debug)]
pub struct StoredRange {
    /// Purchases in the range.
    pub purchases: u64,
    /// The sum of their terms.
    pub digest: LedgerDigest,
    /// The range's last purchase; `None` when no purchase comes after it.
    pub last: Option<String>,
}

/// What R18's settlement reads of one purchase.
#[derive(Clone, Debug, FromQueryResult)]
pub struct SettlingRow {
    /// The purchase.
    pub id: String,
    /// Its facility.
    pub facility_id: String,
    /// Its kind ([`PurchaseKind`]).
    pub kind: String,
    /// The period it was bought in.
    pub purchase_period: String,
    /// Its instalments (1 for a credit purchase).
    pub months: i32,
    /// When it was settled, if it was.
    pub settled_at: Option<DateTime<Utc>>,
    /// When its holds end by the clock, if they do.
    pub hold_release_at: Option<DateTime<Utc>>,
    /// Whether its holds wait for the organization's contract (R18).
    pub hold_waits_for_contract: bool,
    /// When its holds were released, if they were.
    pub hold_released_at: Option<DateTime<Utc>>,
    /// Its facility's organization (none when the facility is missing).
    pub organization_id: Option<String>,
}

impl SettlingRow {
    /// Whether it is an instalment purchase whose holds stay until it is settled, so that
    /// R18 asks whether its organization's contract is in force.
    pub fn holds_until_settled(&self) -> bool {
        self.kind == PurchaseKind::Instalment.as_str()
            && self.hold_released_at.is_none()
            && release_of(self.hold_release_at, self.hold_waits_for_contract)
                == HoldRelease::UntilSettled
    }
}

impl Store {
    /// Returns what R18's settlement reads of the purchases among `purchase_ids` that
    /// exist, in no particular order: only those columns, and the organization by a join.
    pub async fn settling(&self, purchase_ids: &[&str]) -> Result<Vec<SettlingRow>, CreditError> {
        settling_rows(&self.db, purchase_ids).await
    }

    /// Records that purchases are settled, in one transaction; idempotent per purchase. An
    /// instalment purchase's holds are released when its `contract_in_force`, or else kept
    /// until it is (R18), and in either case not before 00:00 Tehran on the 8th of its last
    /// deduction period (R16: an early remittance must not free room for a purchase deducted
    /// in that same period). A credit purchase's holds keep their clock release (R17).
    /// Returns how many purchases this call marked (the others were settled already).
    ///
    /// It takes the lock of every facility involved (in one statement, in id order on
    /// PostgreSQL so that two batches never wait for each other in a cycle), reads the
    /// purchases again under the locks and writes them with one `UPDATE` per outcome of R18
    /// and release instant, per [`IDS_PER_STATEMENT`] purchases.
    #[tracing::instrument(skip_all, fields(purchases = settling.len()))]
    pub async fn mark_settled(
        &self,
        settling: &[Settling<'_>],
        now: DateTime<Utc>,
    ) -> Result<u64, CreditError> {
        if settling.is_empty() {
            return Ok(0);
        }
        let in_force: HashMap<&str, bool> = settling
            .iter()
            .map(|purchase| (purchase.purchase_id, purchase.contract_in_force))
            .collect();
        let mut facility_ids: Vec<&str> = settling.iter().map(|p| p.facility_id).collect();
        facility_ids.sort_unstable();
        facility_ids.dedup();
        let purchase_ids: Vec<&str> = in_force.keys().copied().collect();

        let txn = tavana_kit::db::begin_write(&self.db).await?;
        Self::lock_facilities(&txn, &facility_ids).await?;
        let mut plain = Vec::new();
        let mut release: std::collections::BTreeMap<DateTime<Utc>, Vec<String>> =
            std::collections::BTreeMap::new();
        let mut wait = Vec::new();
        let rows = settling_rows(&txn, &purchase_ids).await?;
        for row in rows.into_iter().filter(|row| row.settled_at.is_none()) {
            let is_instalment = row.kind == PurchaseKind::Instalment.as_str();
            let unreleased = row.hold_released_at.is_none();
            match (is_instalment && unreleased, in_force.get(row.id.as_str())) {
                (false, _) => plain.push(row.id),
                (true, Some(true)) => {
                    let at = settled_release_of(&row.purchase_period, row.months, now)?;
                    release.entry(at).or_default().push(row.id);
                }
                (true, _) => wait.push(row.id),
            }
        }
        let mut marked = 0;
        let mut holds = vec![
            (&plain, None),
            (
                &wait,
                Some((purchase::Column::HoldWaitsForContract, Expr::value(true))),
            ),
        ];
        // Released now, or by the clock later (R16, R18), as credit purchases are (R17).
        for (at, ids) in &release {
            let (column, at) = release_column(*at, now);
            holds.push((ids, Some((column, Expr::value(at)))));
        }
        for (ids, hold) in holds {
            for ids in ids.chunks(IDS_PER_STATEMENT) {
                let mut update = purchase::Entity::update_many()
                    .col_expr(purchase::Column::SettledAt, Expr::value(now));
                if let Some((column, value)) = hold.clone() {
                    update = update.col_expr(column, value);
                }
                marked += update
                    .filter(purchase::Column::Id.is_in(ids.iter().map(String::as_str)))
                    .filter(purchase::Column::SettledAt.is_null())
                    .exec(&txn)
                    .await?
                    .rows_affected;
            }
        }
        txn.commit().await?;
        Ok(marked)
    }

    /// Records that a remittance settled some instalment of these purchases (R20: they are
    /// refunded no more); idempotent, the first time is kept.
    pub async fn mark_partly_settled(
        &self,
        purchase_ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<u64, CreditError> {
        let mut marked = 0;
        for ids in purchase_ids.chunks(IDS_PER_STATEMENT) {
            let mark = purchase::Entity::update_many()
                .col_expr(purchase::Column::PartlySettledAt, Expr::value(now))
                .filter(purchase::Column::Id.is_in(ids.iter().copied()))
                .filter(purchase::Column::PartlySettledAt.is_null())
                .into_query();
            marked += tavana_kit::db::execute_write(&self.db, &mark)
                .await?
                .rows_affected();
        }
        Ok(marked)
    }

    // ---- reconciliation (R31) ----

    /// Returns up to `limit` purchases with an id after `after`, in id order, as R31's
    /// ledger: only the columns it compares, one index range of the purchases.
    pub async fn ledger_after(
        &self,
        after: &str,
        limit: u64,
    ) -> Result<Vec<LedgerRow>, CreditError> {
        Ok(purchase::Entity::find()
            .select_only()
            .columns([
                purchase::Column::Id,
                purchase::Column::Amount,
                purchase::Column::RefundedAmount,
                purchase::Column::Schedule,
                purchase::Column::ScheduleVersion,
                purchase::Column::NationalId,
            ])
            .filter(purchase::Column::Id.gt(after))
            .order_by_asc(purchase::Column::Id)
            .limit(limit)
            // By position, in the order selected: a page is thousands of rows.
            .into_tuple::<(String, i64, i64, String, i32, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .map(
                |(id, amount, refunded_amount, schedule, schedule_version, national_id)| {
                    LedgerRow {
                        id,
                        amount,
                        refunded_amount,
                        schedule,
                        schedule_version,
                        national_id,
                    }
                },
            )
            .collect())
    }

    /// Digests the next range of R31's ledger where the database can: the up to `limit`
    /// purchases with an id after `after`, in id order, their stored terms summed by one
    /// aggregate over that range of `ix_purchase_id_term` (read from the index alone), and
    /// the range's last purchase unless none comes after it. `None` when a purchase of the
    /// range has no stored term (a schedule that does not add up, or a purchase older than
    /// the column): the range is then digested from its rows ([`Store::ledger_after`]),
    /// which also reports what does not add up.
    pub async fn stored_ledger_digest(
        &self,
        after: &str,
        limit: u64,
    ) -> Result<Option<StoredRange>, CreditError> {
        let mut range = Query::select();
        range
            .columns([purchase::Column::Id, purchase::Column::LedgerTerm])
            .from(purchase::Entity)
            .and_where(purchase::Column::Id.gt(after))
            .order_by(purchase::Column::Id, Order::Asc)
            .limit(limit);
        let sums = Query::select()
            .exprs(tavana_kit::ledger_digest::sum_columns().map(Expr::cust))
            .expr(Expr::cust("MAX(id)"))
            .from_subquery(range, "purchase_range")
            .to_owned();
        let row = self
            .db
            .query_one(&sums)
            .await?
            .ok_or_else(|| internal("an aggregate returned no row"))?;
        let (purchases, termed, high, low, last) =
            row.try_get_many_by_index::<(i64, i64, i64, i64, Option<String>)>()?;
        let Some(digest) = LedgerDigest::from_sums(purchases, termed, high, low) else {
            return Ok(None);
        };
        let purchases = u64::try_from(purchases).map_err(|_| internal("a count is negative"))?;
        let last = match last {
            Some(last) if purchases == limit => purchase::Entity::find()
                .select_only()
                .column(purchase::Column::Id)
                .filter(purchase::Column::Id.gt(last.as_str()))
                .into_tuple::<String>()
                .one(&self.db)
                .await?
                .map(|_| last),
            _ => None,
        };
        Ok(Some(StoredRange {
            purchases,
            digest,
            last,
        }))
    }

    /// Takes the locks of several facilities (`facility_ids` sorted, without repeats) as
    /// the transaction's first statement(s); see the module's comment. It writes nothing:
    /// on PostgreSQL it takes the row lock a facility's `UPDATE` takes (`FOR NO KEY
    /// UPDATE`), so it waits for and holds back the same transactions without writing a
    /// new version of thousands of rows; on SQLite `begin_write` already holds the
    /// database's write lock. Either way it counts the facilities found.
    pub(super) async fn lock_facilities(
        txn: &DatabaseTransaction,
        facility_ids: &[&str],
    ) -> Result<(), CreditError> {
        let mut locked = 0;
        if txn.get_database_backend() == DbBackend::Postgres {
            // The rows are locked in the order the subquery returns them.
            let ids = facility_ids
                .iter()
                .map(|id| Value::String(Some((*id).to_owned())))
                .collect();
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT COUNT(*) AS locked FROM (SELECT id FROM facility WHERE id = ANY($1) \
                 ORDER BY id FOR NO KEY UPDATE) AS facilities",
                [Value::Array(ArrayType::String, Some(Box::new(ids)))],
            );
            locked = count_of(txn.query_one_raw(statement).await?)?;
        } else {
            for ids in facility_ids.chunks(IDS_PER_STATEMENT) {
                locked += facility::Entity::find()
                    .filter(facility::Column::Id.is_in(ids.iter().copied()))
                    .count(txn)
                    .await?;
            }
        }
        let expected = u64::try_from(facility_ids.len())
            .map_err(|_| internal("facility count does not fit in u64"))?;
        if locked != expected {
            return Err(CreditError::NoFacility);
        }
        Ok(())
    }
}

/// Reads [`SettlingRow`]s of the purchases among `purchase_ids`, per
/// [`IDS_PER_STATEMENT`] ids.
async fn settling_rows(
    conn: &impl ConnectionTrait,
    purchase_ids: &[&str],
) -> Result<Vec<SettlingRow>, CreditError> {
    let mut rows = Vec::with_capacity(purchase_ids.len());
    for ids in purchase_ids.chunks(IDS_PER_STATEMENT) {
        let facility = purchase::Entity::belongs_to(facility::Entity)
            .from(purchase::Column::FacilityId)
            .to(facility::Column::Id)
            .into();
        rows.extend(
            purchase::Entity::find()
                .select_only()
                .columns([
                    purchase::Column::Id,
                    purchase::Column::FacilityId,
                    purchase::Column::Kind,
                    purchase::Column::PurchasePeriod,
                    purchase::Column::Months,
                    purchase::Column::SettledAt,
                    purchase::Column::HoldReleaseAt,
                    purchase::Column::HoldWaitsForContract,
                    purchase::Column::HoldReleasedAt,
                ])
                .column(facility::Column::OrganizationId)
                .join(JoinType::LeftJoin, facility)
                .filter(purchase::Column::Id.is_in(ids.iter().copied()))
                .into_model::<SettlingRow>()
                .all(conn)
                .await?,
        );
    }
    Ok(rows)
}

/// Reads the `locked` count of [`Store::lock_facilities`]'s PostgreSQL statement.
fn count_of(row: Option<sea_orm::QueryResult>) -> Result<u64, CreditError> {
    let count: i64 = row
        .ok_or_else(|| internal("a count returned no row"))?
        .try_get("", "locked")?;
    u64::try_from(count).map_err(|_| internal("a count is negative"))
}
