//! The audit trail of staff actions (R32): append-only, one `audit_event` table per
//! service, each row written in the same transaction as the action it records.
//!
//! A service's migration creates the table with [`create_audit_table`]; its flows write
//! with [`record_in`] inside the action's transaction; its gRPC server serves
//! `tavana.audit.v1.AuditService` with [`server`], which support reads through the
//! gateway's `GET /v1/admin/audit` (merged across services by (at, id), newest first).
//!
//! "Append-only" is enforced twice: no code path updates or deletes a row, and the
//! database refuses `UPDATE` and `DELETE` on the table (a trigger on PostgreSQL and on
//! SQLite).
//!
//! The request id is the gateway's `x-request-id`, carried in the call's metadata; the
//! gRPC server (see [`crate::grpc::serve_grpc`]) keeps it in a task-local for the call,
//! so an entry made anywhere in a handler's flow carries it without threading it through
//! every signature.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult};
use sea_orm_migration::prelude::{
    ColumnDef, Condition, DeriveIden, Expr, ExprTrait as _, Index, Order, Query, SchemaManager,
    Table,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tavana_proto::audit::v1 as pb;
use tavana_proto::audit::v1::audit_service_server::{AuditService, AuditServiceServer};
use tonic::{Request, Response, Status};

use crate::caller::{Caller, Role};
use crate::error::Problem;
use crate::paging;

/// The metadata key (and HTTP header) of the request id.
pub const REQUEST_ID_KEY: &str = "x-request-id";

tokio::task_local! {
    /// The request id of the gRPC call being served, set by the server for the call.
    pub static REQUEST_ID: String;
}

/// Returns the request id of the call being served; empty outside a call.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// The audit table and its columns.
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum AuditEvent {
    /// The table, `audit_event`.
    Table,
    /// A UUID v7.
    Id,
    /// When the action happened (real clock).
    At,
    /// `at` in microseconds since the epoch: the page order, exact on both backends.
    AtMicros,
    /// The acting user's national ID; empty for a service or the admin CLI.
    ActorNationalId,
    /// The actor's roles, comma separated (`role`, `role@REGION` or `service:NAME`).
    ActorRoles,
    /// What was done, e.g. `role.grant`.
    Action,
    /// What it was done to, e.g. a national ID.
    Subject,
    /// The gateway's `x-request-id`, or empty.
    RequestId,
    /// Action-specific details, a JSON object.
    Details,
}

/// Creates the `audit_event` table, its indexes and the triggers that refuse `UPDATE`
/// and `DELETE`; call it from a service's migration.
pub async fn create_audit_table(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(AuditEvent::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(AuditEvent::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuditEvent::At)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvent::AtMicros)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvent::ActorNationalId)
                        .string()
                        .not_null(),
                )
                .col(ColumnDef::new(AuditEvent::ActorRoles).string().not_null())
                .col(ColumnDef::new(AuditEvent::Action).string().not_null())
                .col(ColumnDef::new(AuditEvent::Subject).string().not_null())
                .col(ColumnDef::new(AuditEvent::RequestId).string().not_null())
                .col(ColumnDef::new(AuditEvent::Details).text().not_null())
                .to_owned(),
        )
        .await?;
    for (name, column) in [
        ("ix_audit_event_at", None),
        ("ix_audit_event_subject_at", Some(AuditEvent::Subject)),
        ("ix_audit_event_actor_at", Some(AuditEvent::ActorNationalId)),
    ] {
        let mut index = Index::create();
        index.name(name).table(AuditEvent::Table).if_not_exists();
        if let Some(column) = column {
            index.col(column);
        }
        index.col(AuditEvent::AtMicros).col(AuditEvent::Id);
        manager.create_index(index.to_owned()).await?;
    }
    let connection = manager.get_connection();
    match connection.get_database_backend() {
        DbBackend::Postgres => {
            connection
                .execute_unprepared(
                    "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                     RAISE EXCEPTION 'audit_event is append-only'; END $$",
                )
                .await?;
            connection
                .execute_unprepared(
                    "CREATE TRIGGER audit_event_append_only \
                     BEFORE UPDATE OR DELETE ON audit_event \
                     FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
                )
                .await?;
            connection
                .execute_unprepared(
                    "CREATE TRIGGER audit_event_no_truncate \
                     BEFORE TRUNCATE ON audit_event \
                     FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
                )
                .await?;
        }
        _ => {
            for operation in ["UPDATE", "DELETE"] {
                connection
                    .execute_unprepared(&format!(
                        "CREATE TRIGGER IF NOT EXISTS audit_event_no_{} \
                         BEFORE {operation} ON audit_event \
                         BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
                        operation.to_lowercase()
                    ))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Drops the `audit_event` table (a migration's `down`).
pub async fn drop_audit_table(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .drop_table(
            Table::drop()
                .table(AuditEvent::Table)
                .if_exists()
                .to_owned(),
        )
        .await?;
    if manager.get_connection().get_database_backend() == DbBackend::Postgres {
        manager
            .get_connection()
            .execute_unprepared("DROP FUNCTION IF EXISTS audit_event_append_only()")
            .await?;
    }
    Ok(())
}

/// Who did it: a user's national ID and roles, or a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user's national ID; empty for a service or the admin CLI.
    pub national_id: String,
    /// `role`, `role@REGION`, or `service:NAME` for a service.
    pub roles: Vec<String>,
}

impl Actor {
    /// Returns the actor of a call by `caller`.
    pub fn of(caller: &Caller) -> Actor {
        match caller {
            Caller::User {
                national_id,
                grants,
                ..
            } => Actor {
                national_id: national_id.clone(),
                roles: grants.iter().map(ToString::to_string).collect(),
            },
            Caller::Service { name } => Actor {
                national_id: String::new(),
                roles: vec![format!("service:{name}")],
            },
            Caller::Merchant { merchant_id } => Actor {
                national_id: String::new(),
                roles: vec![format!("merchant:{merchant_id}")],
            },
            Caller::Anonymous => Actor {
                national_id: String::new(),
                roles: Vec::new(),
            },
        }
    }
}

/// One recorded staff action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A UUID v7.
    pub id: String,
    /// When (real clock: the audit trail is security time, not business time).
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// What was done, e.g. `role.grant`.
    pub action: String,
    /// What it was done to, e.g. a national ID.
    pub subject: String,
    /// The gateway's `x-request-id`, or empty.
    pub request_id: String,
    /// Action-specific details, a JSON object.
    pub details: Value,
}

impl AuditEntry {
    /// Creates an entry for an action by `caller` now, in the call being served.
    pub fn new(
        caller: &Caller,
        action: &str,
        subject: impl Into<String>,
        details: Value,
    ) -> AuditEntry {
        let at = Utc::now();
        AuditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            at,
            actor: Actor::of(caller),
            action: action.to_owned(),
            subject: subject.into(),
            request_id: current_request_id(),
            details,
        }
    }

    fn position(&self) -> Position {
        Position {
            at_micros: self.at.timestamp_micros(),
            id: self.id.clone(),
        }
    }

    /// Returns the entry as its proto message.
    pub fn to_proto(&self) -> pb::AuditEvent {
        pb::AuditEvent {
            id: self.id.clone(),
            at: Some(prost_types::Timestamp {
                seconds: self.at.timestamp(),
                // Documented saturation: a leap second's nanos (1e9 and up) read as the last
                // nanosecond of the second, as a proto Timestamp requires; the rest fit.
                nanos: i32::try_from(Ord::min(self.at.timestamp_subsec_nanos(), 999_999_999))
                    .unwrap_or(0),
            }),
            actor_national_id: self.actor.national_id.clone(),
            actor_roles: self.actor.roles.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            request_id: self.request_id.clone(),
            details_json: self.details.to_string(),
        }
    }
}

/// Writes `entry`; call it inside the transaction of the action it records.
pub async fn record_in<C: ConnectionTrait>(conn: &C, entry: &AuditEntry) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table(AuditEvent::Table)
        .columns([
            AuditEvent::Id,
            AuditEvent::At,
            AuditEvent::AtMicros,
            AuditEvent::ActorNationalId,
            AuditEvent::ActorRoles,
            AuditEvent::Action,
            AuditEvent::Subject,
            AuditEvent::RequestId,
            AuditEvent::Details,
        ])
        .values_panic([
            entry.id.clone().into(),
            entry.at.into(),
            entry.at.timestamp_micros().into(),
            entry.actor.national_id.clone().into(),
            entry.actor.roles.join(",").into(),
            entry.action.clone().into(),
            entry.subject.clone().into(),
            entry.request_id.clone().into(),
            entry.details.to_string().into(),
        ])
        .to_owned();
    conn.execute(&insert).await?;
    Ok(())
}

/// A position in the trail's order, (at, id) descending; the same for every service,
/// so one token pages a merge of several services' trails.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// `at` in microseconds since the epoch.
    pub at_micros: i64,
    /// The entry id.
    pub id: String,
}

impl Position {
    /// Returns the opaque page token of this position.
    pub fn token(&self) -> String {
        paging::encode_token(self)
    }

    /// Parses a page token made by [`Position::token`].
    // Problem is the shared error shape; boxing it here alone would make callers differ.
    #[allow(clippy::result_large_err)]
    pub fn parse(token: &str) -> Result<Position, Problem> {
        paging::decode_token(token)
    }
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only entries about this subject.
    pub subject: Option<String>,
    /// Only entries by the actor with this national ID.
    pub actor: Option<String>,
    /// Only entries after this position (older, in the descending order).
    pub after: Option<Position>,
    /// At most this many.
    pub page_size: u64,
}

fn entry_from_row(row: &QueryResult) -> Result<AuditEntry, DbErr> {
    let roles: String = row.try_get("", "actor_roles")?;
    let details: String = row.try_get("", "details")?;
    Ok(AuditEntry {
        id: row.try_get("", "id")?,
        at: row.try_get("", "at")?,
        actor: Actor {
            national_id: row.try_get("", "actor_national_id")?,
            roles: roles
                .split(',')
                .filter(|role| !role.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        action: row.try_get("", "action")?,
        subject: row.try_get("", "subject")?,
        request_id: row.try_get("", "request_id")?,
        details: serde_json::from_str(&details).unwrap_or(Value::Null),
    })
}

/// Lists entries newest first by (at, id); returns the page and the position after its
/// last entry when more follow.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    query: &AuditQuery,
) -> Result<(Vec<AuditEntry>, Option<Position>), DbErr> {
    let mut select = Query::select();
    select
        .columns([
            AuditEvent::Id,
            AuditEvent::At,
            AuditEvent::ActorNationalId,
            AuditEvent::ActorRoles,
            AuditEvent::Action,
            AuditEvent::Subject,
            AuditEvent::RequestId,
            AuditEvent::Details,
        ])
        .from(AuditEvent::Table);
    if let Some(subject) = &query.subject {
        select.and_where(Expr::col(AuditEvent::Subject).eq(subject.clone()));
    }
    if let Some(actor) = &query.actor {
        select.and_where(Expr::col(AuditEvent::ActorNationalId).eq(actor.clone()));
    }
    if let Some(after) = &query.after {
        select.cond_where(
            Condition::any()
                .add(Expr::col(AuditEvent::AtMicros).lt(after.at_micros))
                .add(
                    Condition::all()
                        .add(Expr::col(AuditEvent::AtMicros).eq(after.at_micros))
                        .add(Expr::col(AuditEvent::Id).lt(after.id.clone())),
                ),
        );
    }
    let page_size = Ord::max(query.page_size, 1);
    select
        .order_by(AuditEvent::AtMicros, Order::Desc)
        .order_by(AuditEvent::Id, Order::Desc)
        .limit(page_size + 1);
    let rows = conn.query_all(&select).await?;
    let mut entries = rows
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if entries.len() as u64 > page_size {
        entries.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        entries.last().map(AuditEntry::position)
    } else {
        None
    };
    Ok((entries, next))
}

/// Returns the entry position of a proto event, for merging pages of several services.
pub fn position_of(event: &pb::AuditEvent) -> Position {
    let at_micros = event.at.as_ref().map_or(0, |at| {
        at.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(at.nanos / 1_000))
    });
    Position {
        at_micros,
        id: event.id.clone(),
    }
}

/// Serves `tavana.audit.v1.AuditService` over one service's `audit_event` table.
#[derive(Clone)]
pub struct AuditRpc {
    db: DatabaseConnection,
}

/// Returns the `AuditService` server of a service's database.
pub fn server(db: DatabaseConnection) -> AuditServiceServer<AuditRpc> {
    AuditServiceServer::new(AuditRpc { db })
}

/// The name of the audit gRPC service, for health checks.
pub const GRPC_SERVICE_NAME: &str = "tavana.audit.v1.AuditService";

/// Who may read a service's audit trail: the gateway, for a support user (the handler
/// checks the role). The audience is the package's, `audit`, on every port.
pub static POLICY: crate::trust::Policy = crate::trust::Policy {
    service: GRPC_SERVICE_NAME,
    audience: "audit",
    methods: &[("ListAuditEvents", &[crate::trust::GATEWAY])],
    reads: &["ListAuditEvents"],
};

#[tonic::async_trait]
impl AuditService for AuditRpc {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = crate::caller::caller(&request);
        if matches!(caller, Caller::Anonymous) {
            return Err(Problem::unauthenticated().into());
        }
        // R32: support reads the trail.
        if !caller.has_role(Role::Support) {
            return Err(Problem::permission_denied().into());
        }
        let request = request.into_inner();
        let non_empty = |value: Option<String>| value.filter(|value| !value.trim().is_empty());
        let query = AuditQuery {
            subject: non_empty(request.subject),
            actor: non_empty(request.actor),
            after: non_empty(request.page_token)
                .map(|token| Position::parse(&token))
                .transpose()?,
            page_size: paging::page_size(request.page_size),
        };
        let (entries, next) = list(&self.db, &query)
            .await
            .map_err(|error| Status::from(Problem::internal(error)))?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            items: entries.iter().map(AuditEntry::to_proto).collect(),
            next_page_token: next.as_ref().map(Position::token),
        }))
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::SchemaManager;
    use serde_json::json;

    use super::*;
    use crate::caller::RoleGrant;

    async fn database() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::connect(&crate::db::sqlite_url(dir.path(), "audit"), 1)
            .await
            .unwrap();
        create_audit_table(&SchemaManager::new(&db)).await.unwrap();
        (dir, db)
    }

    fn support() -> Caller {
        Caller::User {
            employee_id: "E1".into(),
            national_id: "0010000011".into(),
            grants: vec![RoleGrant::global(Role::Support)],
        }
    }

    #[tokio::test]
    async fn r32_entry_carries_actor_subject_and_the_calls_request_id() {
        let (_dir, db) = database().await;
        let entry = REQUEST_ID
            .scope("req-1".to_owned(), async {
                AuditEntry::new(
                    &support(),
                    "role.grant",
                    "0010000029",
                    json!({"role": "contracts"}),
                )
            })
            .await;
        record_in(&db, &entry).await.unwrap();

        let (entries, next) = list(
            &db,
            &AuditQuery {
                page_size: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();

        assert_eq!(next, None);
        assert_eq!(entries.len(), 1);
        let stored = &entries[0];
        assert_eq!(stored.actor.national_id, "0010000011");
        assert_eq!(stored.actor.roles, ["support"]);
        assert_eq!(stored.subject, "0010000029");
        assert_eq!(stored.request_id, "req-1");
        assert_eq!(stored.details, json!({"role": "contracts"}));
        assert_eq!(stored.at.timestamp_micros(), entry.at.timestamp_micros());
    }

    #[tokio::test]
    async fn r32_list_filters_by_subject_and_actor_and_pages_newest_first() {
        let (_dir, db) = database().await;
        let mut ids = Vec::new();
        for subject in ["A", "B", "A", "A"] {
            let entry = AuditEntry::new(&support(), "employee.update", subject, json!({}));
            ids.push(entry.id.clone());
            record_in(&db, &entry).await.unwrap();
        }
        record_in(
            &db,
            &AuditEntry::new(&Caller::service("cli"), "employee.update", "A", json!({})),
        )
        .await
        .unwrap();

        let by_subject = |after| AuditQuery {
            subject: Some("A".into()),
            actor: Some("0010000011".into()),
            after,
            page_size: 2,
        };
        let (first, next) = list(&db, &by_subject(None)).await.unwrap();
        let (second, last) = list(&db, &by_subject(next)).await.unwrap();

        let listed: Vec<&str> = first.iter().chain(&second).map(|e| e.id.as_str()).collect();
        assert_eq!(listed, [ids[3].as_str(), ids[2].as_str(), ids[0].as_str()]);
        assert_eq!(last, None);
    }

    #[tokio::test]
    async fn r32_the_table_refuses_update_and_delete() {
        let (_dir, db) = database().await;
        record_in(
            &db,
            &AuditEntry::new(&support(), "card.unlock", "C1", json!({})),
        )
        .await
        .unwrap();

        let update = db
            .execute_unprepared("UPDATE audit_event SET subject = 'C2'")
            .await;
        let delete = db.execute_unprepared("DELETE FROM audit_event").await;

        assert!(update.is_err());
        assert!(delete.is_err());
    }

    #[test]
    fn service_actor_has_no_national_id() {
        let actor = Actor::of(&Caller::service("admin-cli"));
        assert_eq!(actor.national_id, "");
        assert_eq!(actor.roles, ["service:admin-cli"]);
    }

    #[test]
    fn position_of_a_proto_event_matches_the_entry() {
        let entry = AuditEntry::new(&support(), "card.unlock", "C1", json!({}));
        assert_eq!(position_of(&entry.to_proto()), entry.position());
    }
}
