//! The audit trail of staff actions (R32): every service keeps its own, the gateway asks
//! them all and merges their pages by (at, id), newest first, behind one page token.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tavana_kit::audit::{Position, position_of};
use tavana_kit::caller::Role;
use tavana_kit::error::Problem;
use tavana_kit::paging;
use tavana_proto::audit::v1 as pb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::User;
use crate::error::ApiError;
use crate::extract::ApiQuery;

/// Returns the audit routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_events))
}

/// `?subject=&actor=&page_size=&page_token=`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only actions on this subject (a national ID, request id, customer number, ...).
    pub subject: Option<String>,
    /// Only actions by the user with this national ID.
    pub actor: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Who acted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditActor {
    /// The user's national ID; absent for a service or the admin command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub national_id: Option<String>,
    /// `role` or `role@REGION` the user held, or `service:NAME`.
    pub roles: Vec<String>,
}

/// One staff action.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    /// The entry id (UUID v7).
    pub id: String,
    /// When it was done (RFC 3339, UTC); null only if the service recorded no valid time.
    pub at: Option<DateTime<Utc>>,
    /// Who did it, with the roles they held at the time.
    pub actor: AuditActor,
    /// What was done, e.g. `role.grant`.
    pub action: String,
    /// What it was done to.
    pub subject: String,
    /// The `x-request-id` of the call that did it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Action-specific details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// The actions of this page (at most `page_size`), merged across services by time.
    pub items: Vec<AuditEventView>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

fn view(event: pb::AuditEvent) -> AuditEventView {
    let non_empty = |text: String| Some(text).filter(|text| !text.is_empty());
    AuditEventView {
        at: tavana_proto::datetime(event.at),
        actor: AuditActor {
            national_id: non_empty(event.actor_national_id),
            roles: event.actor_roles,
        },
        action: event.action,
        subject: event.subject,
        request_id: non_empty(event.request_id),
        details: serde_json::from_str(&event.details_json).unwrap_or(serde_json::Value::Null),
        id: event.id,
    }
}

/// Merges the pages of several services, each newest first, into one page of at most
/// `page_size`; returns the page and whether more follow it.
fn merge(pages: Vec<pb::ListAuditEventsResponse>, page_size: usize) -> (Vec<pb::AuditEvent>, bool) {
    let mut more = pages.iter().any(|page| page.next_page_token.is_some());
    let mut events: Vec<(Position, pb::AuditEvent)> = pages
        .into_iter()
        .flat_map(|page| page.items)
        .map(|event| (position_of(&event), event))
        .collect();
    events.sort_by(|a, b| b.0.cmp(&a.0));
    if events.len() > page_size {
        events.truncate(page_size);
        more = true;
    }
    (events.into_iter().map(|(_, event)| event).collect(), more)
}

/// Lists the audit trail of every service, newest first (R32, support only).
#[utoipa::path(get, path = "/v1/admin/audit", tag = "staff",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn list_audit_events(
    State(state): State<AppState>,
    user: User,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    if !user.caller().has_role(Role::Support) {
        return Err(ApiError(Problem::permission_denied()));
    }
    let page_token = query.page_token.filter(|token| !token.is_empty());
    if let Some(token) = &page_token {
        Position::parse(token).map_err(ApiError)?;
    }
    let page_size = paging::page_size(query.page_size.unwrap_or(0));
    let message = pb::ListAuditEventsRequest {
        subject: query.subject.filter(|subject| !subject.trim().is_empty()),
        actor: query.actor.filter(|actor| !actor.trim().is_empty()),
        // At most 100 (`paging::page_size`): both conversions of it are exact.
        page_size: u32::try_from(page_size).unwrap_or(u32::MAX),
        page_token,
    };
    let calls = state.audit.iter().map(|client| {
        let mut client = client.clone();
        let request = user.request(message.clone());
        async move { client.list_audit_events(request).await }
    });
    let pages = futures::future::try_join_all(calls)
        .await?
        .into_iter()
        .map(tonic::Response::into_inner)
        .collect();
    let (events, more) = merge(pages, usize::try_from(page_size).unwrap_or(usize::MAX));
    let next_page_token = events
        .last()
        .filter(|_| more)
        .map(|last| position_of(last).token());
    Ok(Json(AuditPage {
        items: events.into_iter().map(view).collect(),
        next_page_token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, seconds: i64) -> pb::AuditEvent {
        pb::AuditEvent {
            id: id.to_owned(),
            at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            ..pb::AuditEvent::default()
        }
    }

    fn page(events: Vec<pb::AuditEvent>, more: bool) -> pb::ListAuditEventsResponse {
        pb::ListAuditEventsResponse {
            items: events,
            next_page_token: more.then(|| "x".to_owned()),
        }
    }

    fn ids(events: &[pb::AuditEvent]) -> Vec<&str> {
        events.iter().map(|event| event.id.as_str()).collect()
    }

    #[test]
    fn r32_pages_of_several_services_merge_newest_first() {
        let pages = vec![
            page(vec![event("c", 30), event("a", 10)], false),
            page(vec![event("d", 40), event("b", 20)], false),
        ];

        let (events, more) = merge(pages, 3);

        assert_eq!(ids(&events), ["d", "c", "b"]);
        assert!(more);
    }

    #[test]
    fn r32_a_merge_that_fits_is_the_last_page_unless_a_service_has_more() {
        let (events, more) = merge(vec![page(vec![event("a", 1)], false)], 2);
        assert_eq!(ids(&events), ["a"]);
        assert!(!more);

        let (_, more) = merge(vec![page(vec![event("a", 1)], true)], 2);
        assert!(more);
    }
}
