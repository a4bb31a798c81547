//! The credit flows: peer reads first, then one store transaction (no RPC inside it).

use std::collections::{HashMap, HashSet};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use prost::Message;
use rand::Rng;
use tavana_kit::audit::AuditEntry;
use tavana_kit::caller::Caller;
use tavana_kit::clock::SharedClock;
use tavana_kit::ids::NationalId;
use tavana_kit::ledger_digest::LedgerDigest;
use tavana_kit::money::Rial;
use tavana_proto::credit::v1 as pb;

use crate::convert;
use crate::domain::budget::{self, Available};
use crate::domain::card::{CustomerNumber, Pin, attempts_left};
use crate::domain::facility::FacilityTerms;
use crate::domain::idempotency::{IdempotencyKey, request_hash};
use crate::domain::purchase::{PurchaseKind, PurchaseTerms};
use crate::domain::rules;
use crate::error::CreditError;
use crate::peers::Peers;
use crate::store::{
    IdempotencyScope, NewFacility, NewPurchase, NewRefund, Replay, Settling, Store, card,
    employee_arrears, facility, purchase, terms_of,
};

/// The audit action of a card unlock by support (R32); the subject is the customer number.
pub const AUDIT_CARD_UNLOCK: &str = "card.unlock";
/// The audit action of a facility's close (R30, R32); the subject is the holder's national
/// ID.
pub const AUDIT_FACILITY_CLOSE: &str = "facility.close";
/// The audit action of a facility's suspension by support (R30, R32).
pub const AUDIT_FACILITY_SUSPEND: &str = "facility.suspend";
/// The audit action of a facility's resumption by support (R30, R32).
pub const AUDIT_FACILITY_RESUME: &str = "facility.resume";

/// What opening a facility needs (R12).
#[derive(Clone, Debug)]
pub struct OpenFacility {
    /// The approved credit request the facility is opened for (idempotency key).
    pub credit_request_id: String,
    /// The employee who holds the facility.
    pub employee_id: String,
    /// The employee's national ID.
    pub national_id: String,
    /// The employee's full name.
    pub full_name: String,
    /// The employee's organization, whose contract R14 checks.
    pub organization_id: String,
    /// The monthly credit `M` (R12).
    pub monthly_credit: i64,
    /// The instalment ceiling `N` (R12).
    pub max_instalments: u32,
    /// When the facility becomes active (R12).
    pub activates_at: DateTime<Utc>,
    /// The guarantor, told by SMS when an instalment becomes overdue (R29).
    pub guarantor_employee_id: String,
    /// The employee's region, for the regional overdue list (R29).
    pub region_code: String,
}

/// A purchase request, from the app or a merchant.
#[derive(Clone, Debug)]
pub struct PurchaseRequest {
    /// Credit or instalment (`None` when the request named neither).
    pub kind: Option<PurchaseKind>,
    /// The amount in rial.
    pub amount: i64,
    /// The number of instalments (0 or 1 for a credit purchase).
    pub months: u32,
    /// The client's Idempotency-Key (R19).
    pub idempotency_key: String,
}

/// Which facility an action names (R30).
#[derive(Clone, Debug)]
pub enum FacilityTarget {
    /// By facility id (services).
    Id(String),
    /// The employee's own (open, or else latest).
    Employee(String),
    /// The employee with this national ID (support).
    NationalId(String),
}

/// The most purchases one page of the reconciliation ledger holds (R31).
pub const LEDGER_PAGE_MAX: u32 = 10_000;
/// The most bytes the entries of one ledger page take encoded: well under tonic's 4 MiB
/// limit on a received message.
pub const LEDGER_PAGE_BYTES: usize = 3 << 20;

/// A facility's balance (R16-R18).
#[derive(Clone, Debug)]
pub struct Balance {
    /// The facility.
    pub facility: facility::Model,
    /// The room left in `M` and `P` (R16).
    pub available: Available,
    /// When the next hold is released by the clock (R17).
    pub next_release_at: Option<DateTime<Utc>>,
    /// What is overdue (R29).
    pub overdue_amount: Rial,
}

/// The answer to a purchase: the purchase, and whether it is a replay (R19).
#[derive(Clone, Debug)]
pub struct PurchaseAnswer {
    /// The purchase.
    pub purchase: pb::Purchase,
    /// Whether this is the stored answer of an earlier request (R19).
    pub replayed: bool,
}

/// The credit service's flows.
#[derive(Clone)]
pub struct CreditFlows {
    store: Store,
    peers: Peers,
    clock: SharedClock,
    max_instalments: u32,
}

fn hash_pin(pin: Pin) -> Result<String, CreditError> {
    Argon2::default()
        .hash_password(pin.expose().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| CreditError::Internal(anyhow::anyhow!("pin hash failed: {error}")))
}

async fn hash_pin_blocking(pin: Pin) -> Result<String, CreditError> {
    tokio::task::spawn_blocking(move || hash_pin(pin))
        .await
        .map_err(|error| CreditError::Internal(error.into()))?
}

async fn pin_matches(pin: Pin, hash: String) -> Result<bool, CreditError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(pin.expose().as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .map_err(|error| CreditError::Internal(error.into()))
}

/// Refuses a card purchase after checking the PIN against a stand-in hash, so that an
/// unknown or locked card takes as long to refuse as a wrong PIN (R21).
async fn reject_card(pin: Pin) -> CreditError {
    static STAND_IN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let checked = tokio::task::spawn_blocking(move || {
        let hash =
            STAND_IN.get_or_init(|| hash_pin(Pin::entered("0000000000")).unwrap_or_default());
        Argon2::default()
            .verify_password(pin.expose().as_bytes(), hash.as_str())
            .is_ok()
    })
    .await;
    if let Err(error) = checked {
        return CreditError::Internal(error.into());
    }
    CreditError::CardRejected
}

fn replayed(replay: Replay) -> Result<PurchaseAnswer, CreditError> {
    let purchase = pb::Purchase::decode(replay.0.as_slice())
        .map_err(|error| CreditError::Internal(anyhow::anyhow!("bad stored answer: {error}")))?;
    Ok(PurchaseAnswer {
        purchase,
        replayed: true,
    })
}

/// Returns up to `page_size` (at most [`LEDGER_PAGE_MAX`]) purchases with an id after
/// `after`, in id order, as credit's side of R31's reconciliation, and whether no purchase
/// comes after them. A page also ends before its entries would pass [`LEDGER_PAGE_BYTES`]
/// encoded, so that it always fits in one gRPC message, whatever the schedules' lengths.
/// `tavana admin reconcile` reads it straight from the database.
pub async fn purchase_ledger(
    store: &Store,
    after: &str,
    page_size: u32,
) -> Result<(Vec<pb::PurchaseLedgerEntry>, bool), CreditError> {
    let limit = page_size.clamp(1, LEDGER_PAGE_MAX) as usize;
    let rows = store.ledger_after(after, limit as u64 + 1).await?;
    let more = rows.len() > limit;
    let (entries, cut) = within_bytes(
        rows.into_iter().take(limit).map(convert::ledger_entry),
        LEDGER_PAGE_BYTES,
    );
    Ok((entries, !more && !cut))
}

/// Digests the next range of R31's ledger: up to `page_size` (at most [`LEDGER_PAGE_MAX`])
/// purchases with an id after `after` (empty: from the first). The answer names the range's
/// last purchase unless none comes after it, and counts the purchases whose schedule does
/// not add up to the amount less refunds, which no digest can vouch for. The database sums
/// the purchases' stored terms where every purchase of the range has one; otherwise the
/// range's rows are read and digested here.
pub async fn purchase_ledger_digest(
    store: &Store,
    after: &str,
    page_size: u32,
) -> Result<pb::DigestPurchaseLedgerResponse, CreditError> {
    let limit = page_size.clamp(1, LEDGER_PAGE_MAX) as usize;
    if let Some(range) = store.stored_ledger_digest(after, limit as u64).await? {
        return Ok(pb::DigestPurchaseLedgerResponse {
            last_purchase_id: range.last.unwrap_or_default(),
            purchases: range.purchases,
            unbalanced: 0,
            digest: range.digest.to_bytes(),
        });
    }
    let rows = store.ledger_after(after, limit as u64 + 1).await?;
    let more = rows.len() > limit;
    let mut digest = LedgerDigest::default();
    let mut answer = pb::DigestPurchaseLedgerResponse::default();
    for row in rows.into_iter().take(limit) {
        answer.purchases += 1;
        if !convert::add_to_digest(&mut digest, &row) {
            answer.unbalanced += 1;
        }
        answer.last_purchase_id = row.id;
    }
    if !more {
        answer.last_purchase_id.clear();
    }
    answer.digest = digest.to_bytes();
    Ok(answer)
}

/// Keeps the leading `entries` that fit in `max_bytes` as encoded in a response (always
/// the first), and says whether some were left out.
fn within_bytes(
    entries: impl Iterator<Item = pb::PurchaseLedgerEntry>,
    max_bytes: usize,
) -> (Vec<pb::PurchaseLedgerEntry>, bool) {
    let mut kept = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        // The entry, its length prefix and its field tag, as `repeated` encodes them.
        bytes += entry.encoded_len() + 6;
        if bytes > max_bytes && !kept.is_empty() {
            return (kept, true);
        }
        kept.push(entry);
    }
    (kept, false)
}

impl CreditFlows {
    /// Creates the flows.
    pub fn new(store: Store, peers: Peers, clock: SharedClock, max_instalments: u32) -> Self {
        CreditFlows {
            store,
            peers,
            clock,
            max_instalments,
        }
    }

    /// Returns the store (tests and tooling).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Returns the current instant of the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    // ---- facilities (R12, R13) ----

    /// Opens a facility and its card; idempotent by credit request id (R12, R21).
    #[tracing::instrument(skip_all, fields(credit_request_id = %request.credit_request_id))]
    pub async fn open_facility(
        &self,
        request: OpenFacility,
    ) -> Result<facility::Model, CreditError> {
        if let Some(existing) = self
            .store
            .facility_by_request(&request.credit_request_id)
            .await?
        {
            return Ok(existing);
        }
        let terms = FacilityTerms::parse(
            request.monthly_credit,
            request.max_instalments,
            self.max_instalments,
        )?;
        let national_id = NationalId::parse(&request.national_id).map_err(|_| {
            CreditError::invalid(
                "national_id",
                "national_id_invalid",
                "The national ID is not valid.",
                "کد ملی معتبر نیست.",
            )
        })?;
        for (field, value) in [
            ("credit_request_id", &request.credit_request_id),
            ("employee_id", &request.employee_id),
            ("organization_id", &request.organization_id),
        ] {
            if value.trim().is_empty() {
                return Err(CreditError::InvalidField {
                    field,
                    code: "field_missing",
                    message_en: "A required field is missing.",
                    message_fa: "یک فیلد الزامی خالی است.",
                });
            }
        }
        let now = self.now();
        let facility_id = uuid::Uuid::now_v7().to_string();
        let customer_number = CustomerNumber::from_body(rand::rng().random_range(0..1_000_000_000));
        let pin_hash = hash_pin_blocking(Pin::initial(national_id.as_str())).await?;
        let new = NewFacility {
            facility: facility::Model {
                id: facility_id.clone(),
                credit_request_id: request.credit_request_id,
                employee_id: request.employee_id.clone(),
                open_employee_id: Some(request.employee_id.clone()),
                national_id: national_id.as_str().to_owned(),
                full_name: request.full_name,
                organization_id: request.organization_id,
                monthly_credit: terms.monthly_credit().as_i64(),
                max_instalments: i32::try_from(terms.max_instalments()).map_err(|_| {
                    CreditError::internal("max_instalments does not fit the column")
                })?,
                purchasing_power: terms.purchasing_power().as_i64(),
                activates_at: request.activates_at,
                suspended: false,
                closed_at: None,
                created_at: now,
                version: 0,
                guarantor_employee_id: request.guarantor_employee_id,
                region_code: request.region_code,
            },
            card: card::Model {
                facility_id,
                employee_id: request.employee_id,
                customer_number: customer_number.as_str().to_owned(),
                masked_pan: customer_number.masked_pan(),
                pin_hash,
                pin_must_change: true,
                failed_attempts: 0,
                locked: false,
                updated_at: now,
            },
        };
        self.store.open_facility(new).await
    }

    /// Finds the facility a support or employee action names (R30).
    pub async fn facility_for(
        &self,
        target: &FacilityTarget,
    ) -> Result<facility::Model, CreditError> {
        let found = match target {
            FacilityTarget::Id(id) => self.store.facility(id).await?,
            FacilityTarget::Employee(employee_id) => {
                self.store.facility_of_employee(employee_id).await?
            }
            FacilityTarget::NationalId(national_id) => {
                let national_id = NationalId::parse(national_id).map_err(|_| {
                    CreditError::invalid(
                        "national_id",
                        "national_id_invalid",
                        "The national ID is not valid.",
                        "کد ملی معتبر نیست.",
                    )
                })?;
                self.store
                    .facility_of_national_id(national_id.as_str())
                    .await?
            }
        };
        found.ok_or(CreditError::NoFacility)
    }

    /// Closes a facility that owes nothing and holds nothing, and releases its guarantee
    /// at once through the outbox (R13, R30); 409 `facility_has_debt` otherwise. Closing
    /// a closed facility answers it again.
    #[tracing::instrument(skip_all)]
    pub async fn close_facility(
        &self,
        caller: &Caller,
        target: &FacilityTarget,
        reason: &str,
    ) -> Result<facility::Model, CreditError> {
        let row = self.facility_for(target).await?;
        let now = self.now();
        let audit = AuditEntry::new(
            caller,
            AUDIT_FACILITY_CLOSE,
            row.national_id.clone(),
            serde_json::json!({ "facility_id": row.id, "reason": reason }),
        );
        let closed = self
            .store
            .close_facility(
                &row.id,
                now,
                convert::close_messages(&row),
                &audit,
                |owes, holds| rules::r30_ensure_closable(owes, holds, now),
            )
            .await?;
        tracing::info!(facility_id = %closed.id, reason, "facility closed");
        Ok(closed)
    }

    /// Suspends (`true`) or resumes a facility (R30, support): a suspended facility takes
    /// no purchase (`facility_suspended`), its deductions go on. A closed facility stays
    /// closed (409 `facility_closed`).
    #[tracing::instrument(skip_all, fields(suspended))]
    pub async fn set_suspended(
        &self,
        caller: &Caller,
        target: &FacilityTarget,
        suspended: bool,
        reason: &str,
    ) -> Result<facility::Model, CreditError> {
        let row = self.facility_for(target).await?;
        if row.closed_at.is_some() {
            return Err(CreditError::FacilityClosed);
        }
        let action = if suspended {
            AUDIT_FACILITY_SUSPEND
        } else {
            AUDIT_FACILITY_RESUME
        };
        let audit = AuditEntry::new(
            caller,
            action,
            row.national_id.clone(),
            serde_json::json!({ "facility_id": row.id, "reason": reason }),
        );
        self.store
            .set_suspended_audited(&row.id, suspended, &audit)
            .await?;
        tracing::info!(facility_id = %row.id, suspended, reason, "facility suspension changed");
        self.store
            .facility(&row.id)
            .await?
            .ok_or(CreditError::NoFacility)
    }

    /// Returns up to `page_size` purchases after `after` (id order) as credit's side of
    /// R31's reconciliation, and whether no purchase comes after them.
    pub async fn purchase_ledger(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<(Vec<pb::PurchaseLedgerEntry>, bool), CreditError> {
        purchase_ledger(&self.store, after, page_size).await
    }

    /// See [`purchase_ledger_digest`].
    pub async fn purchase_ledger_digest(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<pb::DigestPurchaseLedgerResponse, CreditError> {
        purchase_ledger_digest(&self.store, after, page_size).await
    }

    async fn facility_of(&self, employee_id: &str) -> Result<facility::Model, CreditError> {
        self.store
            .facility_of_employee(employee_id)
            .await?
            .ok_or(CreditError::NoFacility)
    }

    // ---- balance (R16-R18) ----

    /// Returns the employee's balance at the clock's now.
    ///
    /// Identity never calls credit, so a settled instalment purchase whose holds wait for
    /// the organization's contract (R18) is released when we next look: here (and before
    /// every purchase) we ask identity about the contract, only when such holds exist.
    #[tracing::instrument(skip_all)]
    pub async fn balance(&self, employee_id: &str) -> Result<Balance, CreditError> {
        let now = self.now();
        let (facility, mut held) = self
            .store
            .facility_and_held_room(employee_id, now)
            .await?
            .ok_or(CreditError::NoFacility)?;
        if held.waits_for_contract
            && self
                .peers
                .contract_in_force(&facility.organization_id)
                .await?
        {
            self.store.release_waiting_holds(&facility.id, now).await?;
            held = self.store.held_room(&facility, now).await?;
        }
        Ok(Balance {
            available: budget::available(terms_of(&facility)?, &held.holds, now),
            next_release_at: budget::next_release_at(&held.holds, now),
            overdue_amount: held.overdue_amount,
            facility,
        })
    }

    // ---- arrears (R29) ----

    /// Records employees' overdue amounts from settlement, each only over an older version.
    pub async fn set_arrears(&self, items: Vec<pb::EmployeeArrears>) -> Result<u64, CreditError> {
        let rows: Vec<employee_arrears::Model> = items
            .into_iter()
            .filter(|item| !item.employee_id.trim().is_empty())
            .map(|item| employee_arrears::Model {
                employee_id: item.employee_id,
                overdue_amount: item.overdue_amount.max(0),
                version: item.version,
                held_monthly: item.held_monthly.max(0),
                held_until_period: item.held_until_period,
            })
            .collect();
        self.store.set_arrears(&rows).await
    }

    // ---- purchases (R14-R16, R19) ----

    /// Buys from the app as the employee (R14-R16, R19).
    #[tracing::instrument(skip_all, fields(merchant_id = %merchant_id))]
    pub async fn create_purchase(
        &self,
        employee_id: &str,
        merchant_id: &str,
        request: PurchaseRequest,
    ) -> Result<PurchaseAnswer, CreditError> {
        let key = IdempotencyKey::parse(&request.idempotency_key)?;
        let shape = PurchaseTerms::parse_shape(request.kind, request.amount, request.months)?;
        let facility = self.facility_of(employee_id).await?;
        let scope = IdempotencyScope {
            caller: format!("employee:{employee_id}"),
            key: key.as_str().to_owned(),
            request_hash: request_hash(
                "create_purchase",
                &[
                    ("merchant_id", merchant_id.to_owned()),
                    ("kind", shape.kind().as_str().to_owned()),
                    ("amount", shape.amount().to_string()),
                    ("months", shape.months().to_string()),
                ],
            ),
        };
        self.purchase_on(&facility, merchant_id, shape, scope).await
    }

    /// Buys with card and PIN as a merchant (R21 and R14-R16, R19).
    #[tracing::instrument(skip_all, fields(merchant_id = %merchant_id))]
    pub async fn create_merchant_purchase(
        &self,
        merchant_id: &str,
        customer_number: &str,
        pin: &str,
        request: PurchaseRequest,
    ) -> Result<PurchaseAnswer, CreditError> {
        let key = IdempotencyKey::parse(&request.idempotency_key)?;
        let shape = PurchaseTerms::parse_shape(request.kind, request.amount, request.months)?;
        let number = CustomerNumber::parse(customer_number)?;
        let pin = Pin::entered(pin);
        let Some(card) = self.store.card_by_number(number.as_str()).await? else {
            return Err(reject_card(pin).await);
        };
        // An unknown card, a wrong PIN and a locked card answer alike (R21).
        match self.verify_pin(&card, pin.clone()).await {
            Ok(()) => {}
            Err(CreditError::PinInvalid { .. }) => return Err(CreditError::CardRejected),
            Err(CreditError::CardLocked) => return Err(reject_card(pin).await),
            Err(other) => return Err(other),
        }
        if card.pin_must_change {
            return Err(CreditError::PinMustChange);
        }
        let facility = self
            .store
            .facility(&card.facility_id)
            .await?
            .ok_or(CreditError::NoFacility)?;
        // The PIN is checked above, never hashed into the record.
        let scope = IdempotencyScope {
            caller: format!("merchant:{merchant_id}"),
            key: key.as_str().to_owned(),
            request_hash: request_hash(
                "create_merchant_purchase",
                &[
                    ("customer_number", number.as_str().to_owned()),
                    ("kind", shape.kind().as_str().to_owned()),
                    ("amount", shape.amount().to_string()),
                    ("months", shape.months().to_string()),
                ],
            ),
        };
        self.purchase_on(&facility, merchant_id, shape, scope).await
    }

    /// Buys on `facility`, or answers the first answer of `scope`'s key (R19).
    ///
    /// A replay answers as the first time did, whatever changed since; yet a new key is the
    /// rule and a retry the exception, so the stored answer is not read on a purchase's way:
    /// a retry of a purchase that committed is refused on the way (the room it took, the
    /// facility or merchant as they are now) or fails on the record's unique key, and looks
    /// for the answer then, here or in the transaction ([`Store::create_purchase`]).
    async fn purchase_on(
        &self,
        facility: &facility::Model,
        merchant_id: &str,
        shape: PurchaseTerms,
        scope: IdempotencyScope,
    ) -> Result<PurchaseAnswer, CreditError> {
        match self
            .purchase_new(facility, merchant_id, shape, &scope)
            .await
        {
            Err(error) => match self.store.find_replay(&scope).await? {
                Some(replay) => replayed(replay),
                None => Err(error),
            },
            answer => answer,
        }
    }

    /// Buys on `facility` as a new request of `scope`'s key.
    async fn purchase_new(
        &self,
        facility: &facility::Model,
        merchant_id: &str,
        shape: PurchaseTerms,
        scope: &IdempotencyScope,
    ) -> Result<PurchaseAnswer, CreditError> {
        let max_instalments = u32::try_from(facility.max_instalments)
            .map_err(|_| CreditError::internal("stored facility max_instalments is negative"))?;
        let terms = PurchaseTerms::parse(
            Some(shape.kind()),
            shape.amount().as_i64(),
            shape.months(),
            max_instalments,
        )?;
        crate::store::status_of(facility, self.now()).ensure_active()?;
        // The two peers are asked at once; the merchant's answer is judged first, as
        // when they were asked one after the other.
        let (merchant, contract_in_force) = tokio::join!(
            self.peers.merchant_for(merchant_id, terms.kind()),
            self.peers.contract_in_force(&facility.organization_id),
        );
        let merchant = merchant?;
        if !contract_in_force? {
            return Err(CreditError::OrganizationContractNotInForce);
        }
        let messages = convert::purchase_messages;
        let encode = convert::encode_purchase;
        let created = self
            .store
            .create_purchase(
                NewPurchase {
                    id: uuid::Uuid::now_v7().to_string(),
                    facility_id: facility.id.clone(),
                    merchant_id: merchant_id.to_owned(),
                    merchant_name: merchant.name,
                    terms,
                    now: self.now(),
                    idempotency: scope,
                    messages: &messages,
                    encode: &encode,
                },
                |facts| rules::r14_r16_admit_purchase(facts, terms),
            )
            .await?;
        match created {
            Ok(row) => {
                tracing::info!(purchase_id = %row.id, amount = row.amount, kind = %row.kind, "purchase created");
                Ok(PurchaseAnswer {
                    purchase: convert::purchase_to_proto(&row),
                    replayed: false,
                })
            }
            Err(replay) => replayed(replay),
        }
    }

    /// Lists the employee's purchases, newest first.
    pub async fn list_purchases(
        &self,
        employee_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<purchase::Model>, String), CreditError> {
        let limit = tavana_kit::paging::page_size(page_size);
        let after = if page_token.is_empty() {
            None
        } else {
            Some(
                tavana_kit::paging::decode_token::<(i64, String)>(page_token)
                    .map_err(|_| CreditError::PageTokenInvalid)?,
            )
        };
        let mut rows = self
            .store
            .list_purchases(employee_id, after, limit + 1)
            .await?;
        let kept =
            usize::try_from(limit).map_err(|_| CreditError::internal("page size does not fit"))?;
        let next = if rows.len() > kept {
            rows.truncate(kept);
            rows.last()
                .map(|row| tavana_kit::paging::encode_token(&(row.created_micros, row.id.clone())))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    // ---- refunds (R20) ----

    /// Refunds a purchase wholly or in part as its merchant (`None`: a service).
    #[tracing::instrument(skip_all, fields(purchase_id = %purchase_id))]
    pub async fn refund_purchase(
        &self,
        merchant_id: Option<&str>,
        purchase_id: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<pb::Purchase, CreditError> {
        let row = self
            .store
            .purchase(purchase_id)
            .await?
            .ok_or(CreditError::PurchaseNotFound)?;
        if let Some(merchant_id) = merchant_id
            && row.merchant_id != merchant_id
        {
            return Err(CreditError::PurchaseNotFound);
        }
        // R20: a merchant's refund moves money and takes an Idempotency-Key like a
        // purchase (R19); a service (tooling) may refund without one.
        let scope = if merchant_id.is_none() && idempotency_key.trim().is_empty() {
            None
        } else {
            let key = IdempotencyKey::parse(idempotency_key)?;
            Some(IdempotencyScope {
                caller: format!("merchant:{}", merchant_id.unwrap_or("service")),
                key: key.as_str().to_owned(),
                request_hash: request_hash(
                    "refund_purchase",
                    &[
                        ("purchase_id", purchase_id.to_owned()),
                        ("amount", amount.to_string()),
                    ],
                ),
            })
        };
        let messages = convert::refund_messages;
        let encode = convert::encode_purchase;
        let now = self.now();
        let refunded = self
            .store
            .refund_purchase(
                &row.facility_id,
                NewRefund {
                    refund_id: uuid::Uuid::now_v7().to_string(),
                    purchase_id: purchase_id.to_owned(),
                    amount,
                    now,
                    idempotency: scope,
                    messages: &messages,
                    encode: &encode,
                },
                |facts| rules::r20_refund(facts, amount, now),
            )
            .await?;
        match refunded {
            Ok(row) => Ok(convert::purchase_to_proto(&row)),
            // The same key and body answers as the first time did (R19, R20).
            Err(replay) => Ok(replayed(replay)?.purchase),
        }
    }

    // ---- settlement (R18) ----

    /// Records that a remittance settled some instalment of these purchases, so that they
    /// are refunded no more (R20); idempotent.
    pub async fn mark_partly_settled(&self, purchase_ids: &[String]) -> Result<u64, CreditError> {
        let ids: Vec<&str> = purchase_ids.iter().map(String::as_str).collect();
        self.store.mark_partly_settled(&ids, self.now()).await
    }

    /// Records that every instalment of each purchase is settled; idempotent per purchase
    /// (R18). Returns how many purchases this call marked.
    ///
    /// Each purchase is handled as if it came alone: a purchase settled already is left as
    /// it is, the others are marked in one transaction, and one that cannot be marked now
    /// (unknown, or its organization's contract cannot be read) does not hold the others
    /// back. The call then fails as the single call would have for that purchase (unknown
    /// before a missing facility before a peer failure), so that the sender retries; the
    /// retry finds the others settled already.
    #[tracing::instrument(skip_all, fields(purchases = purchase_ids.len()))]
    pub async fn mark_settled(&self, purchase_ids: &[String]) -> Result<u64, CreditError> {
        let mut wanted: Vec<&str> = purchase_ids.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let rows = self.store.settling(&wanted).await?;
        let found: HashSet<&str> = rows.iter().map(|row| row.id.as_str()).collect();
        let unknown: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|id| !found.contains(id))
            .collect();

        let mut no_facility = false;
        let mut peer_error = None;
        let mut in_force: HashMap<&str, bool> = HashMap::new();
        let mut settling = Vec::with_capacity(rows.len());
        for row in rows.iter().filter(|row| row.settled_at.is_none()) {
            let Some(organization_id) = row.organization_id.as_deref() else {
                no_facility = true;
                continue;
            };
            let contract_in_force = if !row.holds_until_settled() {
                true
            } else if let Some(known) = in_force.get(organization_id) {
                *known
            } else {
                // Once per organization and call; one that fails is asked again on retry.
                match self.peers.contract_in_force(organization_id).await {
                    Ok(known) => {
                        in_force.insert(organization_id, known);
                        known
                    }
                    Err(error) => {
                        peer_error.get_or_insert(error);
                        continue;
                    }
                }
            };
            settling.push(Settling {
                purchase_id: &row.id,
                facility_id: &row.facility_id,
                contract_in_force,
            });
        }
        let marked = self.store.mark_settled(&settling, self.now()).await?;

        if !unknown.is_empty() {
            tracing::warn!(unknown = ?unknown, marked, "purchases to mark settled are unknown");
            return Err(CreditError::PurchaseNotFound);
        }
        if no_facility {
            return Err(CreditError::NoFacility);
        }
        if let Some(error) = peer_error {
            return Err(error);
        }
        Ok(marked)
    }

    // ---- cards (R21) ----

    /// Checks a PIN (R21): an attempt is claimed in the database before the PIN is
    /// checked, so that parallel guesses get at most 5 checks; a locked card, or one with
    /// 5 attempts under way, refuses; a wrong PIN stays counted and the fifth locks the
    /// card; a right one forgets earlier wrong ones.
    async fn verify_pin(&self, card: &card::Model, pin: Pin) -> Result<(), CreditError> {
        let Some(attempts) = self
            .store
            .claim_pin_attempt(&card.facility_id, self.now())
            .await?
        else {
            return Err(CreditError::CardLocked);
        };
        if pin_matches(pin, card.pin_hash.clone()).await? {
            self.store.reset_wrong_pins(&card.facility_id).await?;
            return Ok(());
        }
        let locked = self
            .store
            .lock_card_if_exhausted(&card.facility_id, self.now())
            .await?;
        tracing::info!(attempts, locked, "wrong card pin");
        if locked {
            return Err(CreditError::CardLocked);
        }
        Err(CreditError::PinInvalid {
            attempts_left: attempts_left(attempts),
        })
    }

    /// Returns the employee's card.
    pub async fn card(&self, employee_id: &str) -> Result<card::Model, CreditError> {
        let facility = self.facility_of(employee_id).await?;
        self.store
            .card_of_facility(&facility.id)
            .await?
            .ok_or(CreditError::CardNotFound)
    }

    /// Changes the employee's second PIN (R21, S12).
    #[tracing::instrument(skip_all)]
    pub async fn change_pin(
        &self,
        employee_id: &str,
        current_pin: &str,
        new_pin: &str,
    ) -> Result<(), CreditError> {
        let facility = self.facility_of(employee_id).await?;
        let new_pin = Pin::new_pin(new_pin, &facility.national_id)?;
        let card = self
            .store
            .card_of_facility(&facility.id)
            .await?
            .ok_or(CreditError::CardNotFound)?;
        self.verify_pin(&card, Pin::entered(current_pin)).await?;
        let hash = hash_pin_blocking(new_pin).await?;
        self.store
            .change_pin(&card.facility_id, hash, self.now())
            .await
    }

    /// Unlocks a card (support), recorded in the audit trail (R32).
    pub async fn unlock_card(
        &self,
        caller: &Caller,
        customer_number: &str,
    ) -> Result<(), CreditError> {
        let number = CustomerNumber::parse(customer_number)?;
        let audit = AuditEntry::new(
            caller,
            AUDIT_CARD_UNLOCK,
            number.as_str(),
            serde_json::json!({}),
        );
        if !self
            .store
            .unlock_card(number.as_str(), self.now(), &audit)
            .await?
        {
            return Err(CreditError::CardNotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> pb::PurchaseLedgerEntry {
        pb::PurchaseLedgerEntry {
            purchase_id: format!("p{n:04}"),
            national_id: "0012345679".to_owned(),
            amount: 1,
            ..Default::default()
        }
    }

    #[test]
    fn r31_a_ledger_page_ends_before_its_entries_pass_the_byte_budget() {
        let entries: Vec<_> = (0..10).map(entry).collect();
        let each = entries[0].encoded_len() + 6;
        let (kept, cut) = within_bytes(entries.clone().into_iter(), each * 3);
        assert_eq!(kept, entries[..3]);
        assert!(cut);
        // The page as a response stays within the budget (plus its `last_page` flag).
        let response = pb::ListPurchaseLedgerResponse {
            items: kept,
            last_page: false,
        };
        assert!(response.encoded_len() <= each * 3);

        let (kept, cut) = within_bytes(entries.clone().into_iter(), each * 10);
        assert_eq!((kept.len(), cut), (10, false));
        // An entry larger than the budget still makes a page of one: the walk goes on.
        let (kept, cut) = within_bytes(entries.into_iter(), 1);
        assert_eq!((kept.len(), cut), (1, true));
    }
}
