//! Microsoft Graph change notifications for `/users`: the `validationToken` handshake and the
//! per-item `clientState` check.
//!
//! Basic notifications carry no signature; `clientState` is the only credential, so each item is
//! checked on its own (a batch can mix subscriptions and tenants) and bad items are dropped.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{clamp_published, IngressError, IngressRequest, IngressResponse};
use crate::config::Settings;
use crate::envelope::{Source, Subject, Trigger, ENVELOPE_VERSION};
use crate::secret::SecretSet;

/// Graph's tokens are about a hundred characters; anything this long is not one.
const MAX_VALIDATION_TOKEN: usize = 4096;
/// Graph's notification ids are GUIDs; a longer one is not used as a dedupe key.
const MAX_NOTIFICATION_ID: usize = 128;

#[derive(Debug, Clone)]
pub struct EntraIngress {
    client_states: SecretSet,
    subscription_ids: Vec<String>,
    tenant_id: Option<String>,
}

/// The most notifications one request may carry. Microsoft documents no maximum for a
/// `changeNotificationCollection`; the 1 MiB body limit alone lets a caller without the
/// clientState make ingress parse and check hundreds of thousands of empty items (about 1,500
/// real user notifications fit in 1 MiB: ~690 bytes each with a 128-character clientState). A request above this is refused whole (`413`) and
/// nothing is queued: should Graph ever batch more, it retries for four hours, then drops the
/// batch, and reconciliation (delta) catches the changes up: a delay, never a loss.
pub const MAX_NOTIFICATIONS_PER_REQUEST: usize = 1000;

#[derive(Debug, Default)]
pub struct GraphSplit {
    pub triggers: Vec<Trigger>,
    /// Items that failed verification, by reason.
    pub rejected: Rejections,
    /// Verified items that are not about a user (groups, for now).
    pub ignored: usize,
}

/// Why items of one request were dropped, counted: a request is logged in one line however
/// many items it carries, and no item's own text (an attacker's) reaches the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejections {
    pub not_an_object: usize,
    pub client_state: usize,
    pub subscription: usize,
    pub tenant: usize,
}

impl Rejections {
    pub fn total(&self) -> usize {
        self.not_an_object + self.client_state + self.subscription + self.tenant
    }

    fn count(&mut self, reason: Rejection) {
        match reason {
            Rejection::NotAnObject => self.not_an_object += 1,
            Rejection::ClientState => self.client_state += 1,
            Rejection::Subscription => self.subscription += 1,
            Rejection::Tenant => self.tenant += 1,
        }
    }
}

impl std::fmt::Display for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "clientState {}, subscription {}, tenant {}, not an object {}",
            self.client_state, self.subscription, self.tenant, self.not_an_object
        )
    }
}

/// Why one item was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    NotAnObject,
    ClientState,
    Subscription,
    Tenant,
}

#[derive(Deserialize)]
struct NotificationCollection {
    value: CappedItems,
}

/// A collection's items up to [`MAX_NOTIFICATIONS_PER_REQUEST`]; past it they are only
/// counted, never kept, so an oversized request costs no memory per item.
struct CappedItems {
    items: Vec<serde_json::Value>,
    total: usize,
}

impl<'de> Deserialize<'de> for CappedItems {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = CappedItems;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of notifications")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CappedItems, A::Error> {
                let mut items = Vec::new();
                while items.len() < MAX_NOTIFICATIONS_PER_REQUEST {
                    match seq.next_element::<serde_json::Value>()? {
                        Some(item) => items.push(item),
                        None => {
                            let total = items.len();
                            return Ok(CappedItems { items, total });
                        }
                    }
                }
                let mut total = items.len();
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    total += 1;
                }
                Ok(CappedItems { items, total })
            }
        }
        d.deserialize_seq(Items)
    }
}

#[derive(Deserialize)]
struct ChangeNotification {
    #[serde(rename = "subscriptionId", default)]
    subscription_id: Option<String>,
    #[serde(rename = "clientState", default)]
    client_state: Option<String>,
    #[serde(rename = "tenantId", default)]
    tenant_id: Option<String>,
    #[serde(rename = "changeType", default)]
    change_type: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(rename = "resourceData", default)]
    resource_data: Option<ResourceData>,
    #[serde(rename = "lifecycleEvent", default)]
    lifecycle_event: Option<String>,
}

#[derive(Deserialize)]
struct ResourceData {
    #[serde(rename = "@odata.type", default)]
    odata_type: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "eventTime", default)]
    event_time: Option<String>,
}

impl EntraIngress {
    pub fn new(
        client_states: SecretSet,
        subscription_ids: Vec<String>,
        tenant_id: Option<String>,
    ) -> Self {
        Self {
            client_states,
            subscription_ids,
            tenant_id,
        }
    }

    /// `None` when no clientState is configured: the Graph route then answers 404.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let states = settings.entra_client_states();
        let tenant = settings
            .entra
            .tenant_id
            .is_some()
            .then(|| settings.entra_tenant());
        (!states.is_empty())
            .then(|| Self::new(states, settings.entra.subscription_ids.clone(), tenant))
    }

    /// A request with `validationToken` in the query is the subscription handshake, whatever
    /// its body: answer the decoded token as plain text (never as HTML, so it cannot be used
    /// to reflect markup).
    pub fn handshake(&self, req: &IngressRequest) -> Result<Option<IngressResponse>, IngressError> {
        let Some(token) = req.query_param("validationToken") else {
            return Ok(None);
        };
        if token.len() > MAX_VALIDATION_TOKEN {
            return Err(IngressError::BadRequest(
                "validationToken is too long".into(),
            ));
        }
        tracing::info!("answered Graph subscription validation");
        Ok(Some(IngressResponse::text(200, token)))
    }

    pub fn split(&self, body: &[u8], received: DateTime<Utc>) -> Result<GraphSplit, IngressError> {
        let collection: NotificationCollection = serde_json::from_slice(body)
            .map_err(|e| IngressError::malformed("a Graph notification collection", &e))?;
        if collection.value.total > MAX_NOTIFICATIONS_PER_REQUEST {
            return Err(IngressError::TooManyItems {
                items: collection.value.total,
            });
        }
        let mut split = GraphSplit::default();
        for raw in collection.value.items {
            let Ok(item) = serde_json::from_value::<ChangeNotification>(raw.clone()) else {
                split.rejected.count(Rejection::NotAnObject);
                continue;
            };
            let tenant = match self.verify_item(&item) {
                Ok(tenant) => tenant,
                Err(reason) => {
                    split.rejected.count(reason);
                    continue;
                }
            };
            match self.trigger_for(&item, &raw, tenant, received) {
                Some(trigger) => split.triggers.push(trigger),
                None => split.ignored += 1,
            }
        }
        Ok(split)
    }

    /// The tenant the item belongs to if it verifies, else why not. Nothing is logged per
    /// item: the caller counts the reasons and logs the request once.
    fn verify_item(&self, item: &ChangeNotification) -> Result<String, Rejection> {
        let state_ok = item
            .client_state
            .as_deref()
            .is_some_and(|s| self.client_states.matches(s.as_bytes()));
        if !state_ok {
            return Err(Rejection::ClientState);
        }
        let subscription = item.subscription_id.as_deref().unwrap_or_default();
        if !self.subscription_ids.is_empty()
            && !self.subscription_ids.iter().any(|s| s == subscription)
        {
            return Err(Rejection::Subscription);
        }
        let item_tenant = item.tenant_id.as_deref().unwrap_or_default();
        match &self.tenant_id {
            Some(ours) if !ours.eq_ignore_ascii_case(item_tenant) => Err(Rejection::Tenant),
            Some(ours) => Ok(ours.to_ascii_lowercase()),
            None if item_tenant.is_empty() => Ok("entra".to_string()),
            None => Ok(item_tenant.to_ascii_lowercase()),
        }
    }

    fn trigger_for(
        &self,
        item: &ChangeNotification,
        raw: &serde_json::Value,
        tenant: String,
        received: DateTime<Utc>,
    ) -> Option<Trigger> {
        let (subject, event_type) = if let Some(lifecycle) = &item.lifecycle_event {
            let subscription_id = item.subscription_id.clone().unwrap_or_default();
            (Subject::Subscription { subscription_id }, lifecycle.clone())
        } else {
            let change = item.change_type.clone().unwrap_or_else(|| "updated".into());
            match (user_id_of(item), group_id_of(item)) {
                (Some(user_id), _) => (Subject::User { user_id }, change),
                (None, Some(group_id)) => (Subject::Group { group_id }, change),
                (None, None) => return None,
            }
        };
        let published = item
            .resource_data
            .as_ref()
            .and_then(|d| d.event_time.as_deref())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| clamp_published(t.with_timezone(&Utc), received));
        Some(Trigger {
            v: ENVELOPE_VERSION,
            source: Source::Entra,
            tenant,
            subject,
            event_id: notification_id(raw),
            event_type,
            published,
            received,
            hint: None,
            listed: None,
        })
    }
}

/// The user a notification is about, from `resource` ("Users/{id}") or `resourceData`.
fn user_id_of(item: &ChangeNotification) -> Option<String> {
    resource_id_of(item, "#microsoft.graph.user", "users")
}

fn group_id_of(item: &ChangeNotification) -> Option<String> {
    resource_id_of(item, "#microsoft.graph.group", "groups")
}

/// The id of the object a notification is about, from `resourceData` when it names the type,
/// else from the `resource` path (`Users/{id}`, `Groups/{id}`).
fn resource_id_of(item: &ChangeNotification, odata_type: &str, collection: &str) -> Option<String> {
    if let Some(data) = &item.resource_data {
        let is_kind = data
            .odata_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(odata_type));
        if is_kind {
            if let Some(id) = data.id.as_deref().filter(|id| !id.is_empty()) {
                return Some(id.to_string());
            }
        }
    }
    let resource = item.resource.as_deref()?;
    let (kind, id) = resource.trim_start_matches('/').split_once('/')?;
    let id = id.split(['/', '?']).next()?;
    (kind.eq_ignore_ascii_case(collection) && !id.is_empty()).then(|| id.to_string())
}

/// The event id of one delivered notification item.
///
/// Graph documents no field in a user notification that tells one change from the next: two real
/// changes of one user (a re-enable, then a disable) can arrive as byte-identical items. A
/// digest of the item would call the second a duplicate and skip it. So every delivery gets its
/// own id and its own re-read, which is idempotent (one directory read, no SCIM call when
/// nothing changed). The only thing collapsed is what Graph itself marks as the same
/// notification: its optional notification `id`, carried again when a delivery is retried.
/// Without it, a retried delivery is simply read once more.
fn notification_id(raw: &serde_json::Value) -> String {
    match raw.get("id").and_then(|id| id.as_str()).map(str::trim) {
        Some(id) if !id.is_empty() && id.len() <= MAX_NOTIFICATION_ID => format!("graph:{id}"),
        _ => format!("delivery:{}", uuid::Uuid::new_v4().simple()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const TENANT: &str = "84bd8158-6d4d-4958-8b9f-9d6445542f95";
    const SUB: &str = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07";

    fn ingress(subs: &[&str], tenant: Option<&str>) -> EntraIngress {
        EntraIngress::new(
            SecretSet::new([Secret::new("state-now"), Secret::new("state-before")]),
            subs.iter().map(|s| s.to_string()).collect(),
            tenant.map(str::to_string),
        )
    }

    fn item(state: &str, user: &str) -> serde_json::Value {
        serde_json::json!({
            "subscriptionId": SUB, "changeType": "updated", "clientState": state, "tenantId": TENANT,
            "resource": format!("Users/{user}"),
            "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": format!("Users/{user}"),
                             "id": user, "organizationId": TENANT, "eventTime": "2025-06-03T14:22:05.1234567Z",
                             "sequenceNumber": 638845237251234567u64}
        })
    }

    fn body(items: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "value": items })).unwrap()
    }

    #[test]
    fn handshake_echoes_the_decoded_token_as_plain_text() {
        let req = IngressRequest {
            query: Some("validationToken=Validation%3a+Testing+%3Cb%3Ehi%3C%2Fb%3E".into()),
            ..Default::default()
        };
        let resp = ingress(&[], None).handshake(&req).unwrap().unwrap();
        assert_eq!(resp.status, 200);
        assert!(resp.content_type.starts_with("text/plain"));
        assert_eq!(resp.body, "Validation: Testing <b>hi</b>");
        assert!(ingress(&[], None)
            .handshake(&IngressRequest::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn each_item_is_checked_on_its_own() {
        let split = ingress(&[], None)
            .split(
                &body(vec![
                    item("state-now", "u1"),
                    item("forged", "u2"),
                    item("state-before", "u3"),
                ]),
                Utc::now(),
            )
            .unwrap();
        let users: Vec<_> = split.triggers.iter().map(|t| t.subject.clone()).collect();
        assert_eq!(
            users,
            vec![
                Subject::User {
                    user_id: "u1".into()
                },
                Subject::User {
                    user_id: "u3".into()
                }
            ]
        );
        assert_eq!(split.rejected.client_state, 1);
        assert_eq!(split.triggers[0].tenant, TENANT);
        assert_eq!(split.triggers[0].event_type, "updated");
        assert!(split.triggers[0].published.is_some());
    }

    #[test]
    fn subscription_and_tenant_are_checked_when_configured() {
        let strict = ingress(&["other-sub"], None);
        let split = strict
            .split(&body(vec![item("state-now", "u1")]), Utc::now())
            .unwrap();
        assert_eq!((split.triggers.len(), split.rejected.total()), (0, 1));

        let strict = ingress(&[SUB], Some("another-tenant"));
        let split = strict
            .split(&body(vec![item("state-now", "u1")]), Utc::now())
            .unwrap();
        assert_eq!((split.triggers.len(), split.rejected.total()), (0, 1));

        let ok = ingress(&[SUB], Some(TENANT));
        assert_eq!(
            ok.split(&body(vec![item("state-now", "u1")]), Utc::now())
                .unwrap()
                .triggers
                .len(),
            1
        );
    }

    #[test]
    fn lifecycle_notifications_become_subscription_triggers() {
        let lifecycle = serde_json::json!({
            "subscriptionId": SUB, "subscriptionExpirationDateTime": "2025-07-01T10:00:00Z",
            "tenantId": TENANT, "clientState": "state-now", "lifecycleEvent": "reauthorizationRequired"
        });
        let split = ingress(&[], None)
            .split(&body(vec![lifecycle]), Utc::now())
            .unwrap();
        assert_eq!(split.triggers.len(), 1);
        assert_eq!(
            split.triggers[0].subject,
            Subject::Subscription {
                subscription_id: SUB.into()
            }
        );
        assert_eq!(split.triggers[0].event_type, "reauthorizationRequired");
    }

    #[test]
    fn group_notifications_become_group_triggers_and_others_are_ignored() {
        let mut group = item("state-now", "g1");
        group["resource"] = "Groups/g1".into();
        group["resourceData"]["@odata.type"] = "#Microsoft.Graph.Group".into();
        let mut device = item("state-now", "d1");
        device["resource"] = "devices/d1".into();
        device["resourceData"]["@odata.type"] = "#Microsoft.Graph.Device".into();
        let split = ingress(&[], None)
            .split(&body(vec![group, device]), Utc::now())
            .unwrap();
        assert_eq!((split.triggers.len(), split.ignored), (1, 1));
        assert_eq!(
            split.triggers[0].subject,
            Subject::Group {
                group_id: "g1".into()
            }
        );
    }

    #[test]
    fn byte_identical_deliveries_get_distinct_event_ids() {
        // Two real changes of one user can arrive as the very same bytes: each must be read.
        let delivery = body(vec![item("state-now", "u1")]);
        let a = ingress(&[], None).split(&delivery, Utc::now()).unwrap();
        let b = ingress(&[], None).split(&delivery, Utc::now()).unwrap();
        assert_ne!(a.triggers[0].dedupe_key(), b.triggers[0].dedupe_key());
    }

    #[test]
    fn graphs_own_notification_id_marks_a_redelivery() {
        let mut n = item("state-now", "u1");
        n["id"] = "1b2e5e6c-0d1f-4f5e-9a3b-7c8d9e0f1a2b".into();
        let a = ingress(&[], None)
            .split(&body(vec![n.clone()]), Utc::now())
            .unwrap();
        n["clientState"] = "state-before".into();
        let b = ingress(&[], None)
            .split(&body(vec![n]), Utc::now())
            .unwrap();
        assert_eq!(a.triggers[0].event_id, b.triggers[0].event_id);
    }

    #[test]
    fn rejections_are_counted_by_reason() {
        let split = ingress(&[SUB], Some(TENANT))
            .split(
                &body(vec![
                    item("forged", "u1"),
                    item("forged", "u2"),
                    serde_json::json!(7),
                    {
                        let mut other = item("state-now", "u3");
                        other["subscriptionId"] = "not-ours".into();
                        other
                    },
                    {
                        let mut other = item("state-now", "u4");
                        other["tenantId"] = "another-tenant".into();
                        other
                    },
                ]),
                Utc::now(),
            )
            .unwrap();
        assert_eq!(
            split.rejected,
            Rejections {
                not_an_object: 1,
                client_state: 2,
                subscription: 1,
                tenant: 1
            }
        );
    }

    #[test]
    fn more_notifications_than_the_cap_are_refused_whole() {
        let at_cap = body(vec![item("state-now", "u1"); MAX_NOTIFICATIONS_PER_REQUEST]);
        let split = ingress(&[], None).split(&at_cap, Utc::now()).unwrap();
        assert_eq!(split.triggers.len(), MAX_NOTIFICATIONS_PER_REQUEST);
        let over = body(vec![
            serde_json::json!({});
            MAX_NOTIFICATIONS_PER_REQUEST + 1
        ]);
        let err = ingress(&[], None).split(&over, Utc::now()).unwrap_err();
        assert_eq!(
            err,
            IngressError::TooManyItems {
                items: MAX_NOTIFICATIONS_PER_REQUEST + 1
            }
        );
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn malformed_collections_are_bad_requests() {
        for b in [&b"nope"[..], b"{}", br#"{"value": 3}"#] {
            assert!(matches!(
                ingress(&[], None).split(b, Utc::now()),
                Err(IngressError::BadRequest(_))
            ));
        }
    }

    #[test]
    fn resource_paths_are_parsed_leniently() {
        let mut n = serde_json::from_value::<ChangeNotification>(item("s", "u9")).unwrap();
        n.resource_data = None;
        assert_eq!(user_id_of(&n).as_deref(), Some("u9"));
        n.resource = Some("/users/u8".into());
        assert_eq!(user_id_of(&n).as_deref(), Some("u8"));
        n.resource = Some("groups/g".into());
        assert_eq!(user_id_of(&n), None);
    }
}
