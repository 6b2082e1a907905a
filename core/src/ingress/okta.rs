//! Okta event hooks: the shared-secret check, the one-time verification, and splitting a
//! delivery into one trigger per event and User target.
//!
//! Okta signs nothing: the only credential is a static secret in a header whose name the admin
//! chose. So the secret is compared in constant time, a second one is accepted during rotation,
//! and the event is only a trigger — the worker re-reads the user from Okta.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{clamp_published, IngressError, IngressRequest, IngressResponse};
use crate::config::Settings;
use crate::envelope::{EventHint, Source, Subject, Trigger, ENVELOPE_VERSION};
use crate::secret::SecretSet;

const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";

/// Event types that can change what a user should look like on the target. Anything else is
/// accepted and ignored.
pub const USER_EVENT_TYPES: &[&str] = &[
    "user.lifecycle.create",
    "user.lifecycle.activate",
    "user.lifecycle.reactivate",
    "user.lifecycle.deactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.unsuspend",
    "user.lifecycle.delete.initiated",
    "user.account.update_profile",
    "application.user_membership.add",
    "application.user_membership.remove",
    "group.user_membership.add",
    "group.user_membership.remove",
];

/// The event types an Okta event hook for `settings` must deliver: every user lifecycle
/// change, app assignments when the app scopes provisioning, group memberships when groups
/// scope it, give roles or are mirrored. Subscribing to fewer loses changes; to more, only
/// spends the org's daily event-hook budget.
pub fn event_types_needed(settings: &crate::config::Settings) -> Vec<&'static str> {
    let okta = &settings.okta;
    let apps = okta.app_id.is_some();
    let groups = !okta.group_ids.is_empty() || !okta.role_groups.is_empty();
    USER_EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| {
            if t.starts_with("application.user_membership.") {
                apps
            } else if t.starts_with("group.user_membership.") {
                groups
            } else {
                true
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct OktaIngress {
    auth_header: String,
    secrets: SecretSet,
    tenant: String,
    profile: EventProfile,
}

/// Whether a queued trigger carries what the event said about the user (`alternateId`,
/// `displayName`: an email and a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventProfile {
    /// Only ids: the worker re-reads the user from the directory, so an email or a name on the
    /// queue (and in the dead-letter queue, for days) would be personal data kept for nothing.
    IdsOnly,
    /// Event-content mode (no directory to read): the event is the only description of the
    /// user the worker will get.
    Carried,
}

/// The outcome of splitting one delivery.
#[derive(Debug, Default)]
pub struct OktaSplit {
    pub triggers: Vec<Trigger>,
    /// Events that were skipped: unknown types, failed outcomes, no User target.
    pub ignored: usize,
}

#[derive(Deserialize)]
struct OktaDelivery {
    data: OktaDeliveryData,
}

#[derive(Deserialize)]
struct OktaDeliveryData {
    events: Vec<OktaEvent>,
}

#[derive(Deserialize)]
struct OktaEvent {
    uuid: String,
    #[serde(rename = "eventType")]
    event_type: String,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    outcome: Option<OktaOutcome>,
    #[serde(default)]
    target: Option<Vec<OktaTarget>>,
}

#[derive(Deserialize)]
struct OktaOutcome {
    #[serde(default)]
    result: Option<String>,
}

#[derive(Deserialize)]
struct OktaTarget {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(rename = "alternateId", default)]
    alternate_id: Option<String>,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

impl OktaIngress {
    pub fn new(
        auth_header: impl Into<String>,
        secrets: SecretSet,
        tenant: impl Into<String>,
    ) -> Self {
        Self {
            auth_header: auth_header.into(),
            secrets,
            tenant: tenant.into(),
            profile: EventProfile::IdsOnly,
        }
    }

    /// Keeps the event's description of the user on the trigger (event-content mode).
    pub fn with_profile(mut self, profile: EventProfile) -> Self {
        self.profile = profile;
        self
    }

    /// `None` when no shared secret is configured: the Okta routes then answer 404.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let secrets = settings.okta_secrets();
        // The worker uses an event's content only when it has no Okta directory to read and
        // is allowed to trust events (see `worker::read`).
        let profile = if !settings.okta.reads_directory() && settings.trusts_event_content() {
            EventProfile::Carried
        } else {
            EventProfile::IdsOnly
        };
        (!secrets.is_empty()).then(|| {
            Self::new(
                settings.okta.auth_header.clone(),
                secrets,
                settings.okta_tenant(),
            )
            .with_profile(profile)
        })
    }

    /// The shared-secret check every Okta request must pass, GET and POST alike.
    pub fn verify(&self, req: &IngressRequest) -> Result<(), IngressError> {
        let presented = req
            .header(&self.auth_header)
            .ok_or(IngressError::Unauthorized)?;
        if self.secrets.matches(presented.as_bytes()) {
            Ok(())
        } else {
            Err(IngressError::Unauthorized)
        }
    }

    /// `GET /okta`: echo the challenge, but only to a caller holding the secret.
    pub fn verification_challenge(
        &self,
        req: &IngressRequest,
    ) -> Result<IngressResponse, IngressError> {
        self.verify(req)?;
        let challenge = req.header(CHALLENGE_HEADER).ok_or_else(|| {
            IngressError::BadRequest(format!("missing {CHALLENGE_HEADER} header"))
        })?;
        tracing::info!("answered Okta event hook verification");
        Ok(IngressResponse::json(
            200,
            serde_json::json!({ "verification": challenge }),
        ))
    }

    /// One trigger per (event, User target). Targets are found by `type`, never by position.
    pub fn split(&self, body: &[u8], received: DateTime<Utc>) -> Result<OktaSplit, IngressError> {
        let delivery: OktaDelivery = serde_json::from_slice(body)
            .map_err(|e| IngressError::malformed("an Okta event hook delivery", &e))?;
        let mut split = OktaSplit::default();
        for event in delivery.data.events {
            let failed = event
                .outcome
                .as_ref()
                .and_then(|o| o.result.as_deref())
                .is_some_and(|r| r.eq_ignore_ascii_case("FAILURE"));
            if failed || !USER_EVENT_TYPES.contains(&event.event_type.as_str()) {
                split.ignored += 1;
                continue;
            }
            let published = event
                .published
                .as_deref()
                .and_then(|p| DateTime::parse_from_rfc3339(p).ok())
                .map(|p| clamp_published(p.with_timezone(&Utc), received));
            let users: Vec<&OktaTarget> = event
                .target
                .iter()
                .flatten()
                .filter(|t| t.kind.as_deref() == Some("User"))
                .filter(|t| t.id.as_deref().is_some_and(|id| !id.is_empty()))
                .collect();
            if users.is_empty() {
                split.ignored += 1;
                continue;
            }
            for target in users {
                split.triggers.push(Trigger {
                    v: ENVELOPE_VERSION,
                    source: Source::Okta,
                    tenant: self.tenant.clone(),
                    subject: Subject::User {
                        user_id: target.id.clone().unwrap_or_default(),
                    },
                    event_id: event.uuid.clone(),
                    event_type: event.event_type.clone(),
                    published,
                    received,
                    hint: (self.profile == EventProfile::Carried).then(|| EventHint {
                        login: target.alternate_id.clone(),
                        display_name: target.display_name.clone(),
                    }),
                    listed: None,
                });
            }
        }
        Ok(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn a_hook_asks_for_the_membership_events_only_the_settings_use() {
        let mut settings = Settings::default();
        let needed = event_types_needed(&settings);
        assert_eq!(needed.len(), 8, "lifecycle and profile only: {needed:?}");
        settings
            .okta
            .role_groups
            .insert("00gADM".into(), vec!["admin".into()]);
        let needed = event_types_needed(&settings);
        assert!(needed.contains(&"group.user_membership.remove"));
        assert!(!needed.contains(&"application.user_membership.add"));
        settings.okta.app_id = Some("0oa1".into());
        assert_eq!(event_types_needed(&settings), USER_EVENT_TYPES);
    }

    fn ingress() -> OktaIngress {
        OktaIngress::new(
            "authorization",
            SecretSet::new([Secret::new("current"), Secret::new("previous")]),
            "example.okta.com",
        )
    }

    fn request(headers: &[(&str, &str)]) -> IngressRequest {
        IngressRequest {
            method: "GET".into(),
            path: "/okta".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn event(
        uuid: &str,
        event_type: &str,
        result: &str,
        targets: serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "uuid": uuid, "eventType": event_type, "published": "2026-08-20T14:02:09.870Z",
            "outcome": {"result": result, "reason": null}, "target": targets
        })
    }

    fn delivery(events: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "eventType": "com.okta.event_hook", "eventId": "d1", "data": {"events": events}
        }))
        .unwrap()
    }

    fn user(id: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "type": "User", "alternateId": format!("{id}@example.com"), "displayName": "Some One"})
    }

    #[test]
    fn verify_accepts_current_and_previous_secret_in_any_header_case() {
        let okta = ingress();
        assert!(okta
            .verify(&request(&[("Authorization", "current")]))
            .is_ok());
        assert!(okta
            .verify(&request(&[("authorization", "previous")]))
            .is_ok());
        assert_eq!(
            okta.verify(&request(&[("authorization", "wrong")])),
            Err(IngressError::Unauthorized)
        );
        assert_eq!(okta.verify(&request(&[])), Err(IngressError::Unauthorized));
    }

    #[test]
    fn a_custom_header_name_is_honoured() {
        let okta = OktaIngress::new("X-Relay-Secret", SecretSet::new([Secret::new("s")]), "t");
        assert!(okta.verify(&request(&[("x-relay-secret", "s")])).is_ok());
        assert!(okta.verify(&request(&[("authorization", "s")])).is_err());
    }

    #[test]
    fn verification_echoes_the_challenge_only_with_the_secret() {
        let okta = ingress();
        let ok = okta
            .verification_challenge(&request(&[
                ("authorization", "current"),
                ("X-Okta-Verification-Challenge", "chal\"lenge"),
            ]))
            .unwrap();
        assert_eq!(ok.status, 200);
        let body: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
        assert_eq!(body["verification"], "chal\"lenge");

        assert_eq!(
            okta.verification_challenge(&request(&[
                ("authorization", "nope"),
                ("x-okta-verification-challenge", "c"),
            ])),
            Err(IngressError::Unauthorized)
        );
        assert!(matches!(
            okta.verification_challenge(&request(&[("authorization", "current")])),
            Err(IngressError::BadRequest(_))
        ));
    }

    #[test]
    fn split_gives_one_trigger_per_event_and_user_target() {
        let body = delivery(vec![
            event(
                "e1",
                "user.lifecycle.create",
                "SUCCESS",
                serde_json::json!([user("00u1")]),
            ),
            event(
                "e2",
                "group.user_membership.add",
                "SUCCESS",
                // The group comes first: targets are found by type, not by position.
                serde_json::json!([{"id": "00g1", "type": "UserGroup"}, user("00u2")]),
            ),
            event(
                "e3",
                "user.lifecycle.deactivate",
                "FAILURE",
                serde_json::json!([user("00u3")]),
            ),
            event(
                "e4",
                "user.session.start",
                "SUCCESS",
                serde_json::json!([user("00u4")]),
            ),
            event(
                "e5",
                "user.lifecycle.suspend",
                "SUCCESS",
                serde_json::json!([{"id": "00g", "type": "UserGroup"}]),
            ),
        ]);
        let split = ingress().split(&body, Utc::now()).unwrap();
        let users: Vec<_> = split
            .triggers
            .iter()
            .map(|t| (t.event_id.as_str(), t.subject.clone()))
            .collect();
        assert_eq!(
            users,
            vec![
                (
                    "e1",
                    Subject::User {
                        user_id: "00u1".into()
                    }
                ),
                (
                    "e2",
                    Subject::User {
                        user_id: "00u2".into()
                    }
                ),
            ]
        );
        assert_eq!(split.ignored, 3);
        let first = &split.triggers[0];
        assert_eq!(first.tenant, "example.okta.com");
        assert_eq!(first.event_type, "user.lifecycle.create");
        assert!(first.published.is_some());
        assert_eq!(first.hint, None, "the directory is re-read: only ids");
    }

    #[test]
    fn the_event_profile_is_queued_only_in_event_content_mode() {
        let body = delivery(vec![event(
            "e1",
            "user.lifecycle.create",
            "SUCCESS",
            serde_json::json!([user("00u1")]),
        )]);
        let carried = ingress()
            .with_profile(EventProfile::Carried)
            .split(&body, Utc::now())
            .unwrap();
        assert_eq!(
            carried.triggers[0]
                .hint
                .as_ref()
                .and_then(|h| h.login.as_deref()),
            Some("00u1@example.com")
        );

        let mut settings = Settings::default();
        settings.okta.shared_secret = Secret::new("current");
        settings.target.profile = crate::config::TargetProfile::Generic;
        settings.okta.api_token = Secret::new("ssws");
        let with_directory = OktaIngress::from_settings(&settings).unwrap();
        assert_eq!(with_directory.profile, EventProfile::IdsOnly);
        settings.okta.api_token = Secret::default();
        settings.okta.use_event_content = true;
        let event_content = OktaIngress::from_settings(&settings).unwrap();
        assert_eq!(event_content.profile, EventProfile::Carried);
    }

    #[test]
    fn a_published_time_in_the_future_is_clamped_to_the_receive_time() {
        let received = DateTime::parse_from_rfc3339("2026-08-20T14:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |published: &str| {
            let mut e = event(
                "e1",
                "user.lifecycle.deactivate",
                "SUCCESS",
                serde_json::json!([user("00u1")]),
            );
            e["published"] = published.into();
            ingress()
                .split(&delivery(vec![e]), received)
                .unwrap()
                .triggers[0]
                .published
        };
        assert_eq!(at("2099-01-01T00:00:00Z"), Some(received));
        let past = DateTime::parse_from_rfc3339("2026-08-20T14:02:09.870Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(at("2026-08-20T14:02:09.870Z"), Some(past));
    }

    #[test]
    fn two_user_targets_give_two_triggers() {
        let body = delivery(vec![event(
            "e1",
            "user.account.update_profile",
            "SUCCESS",
            serde_json::json!([user("00u1"), user("00u2")]),
        )]);
        assert_eq!(
            ingress().split(&body, Utc::now()).unwrap().triggers.len(),
            2
        );
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for body in [
            &b"not json"[..],
            b"{}",
            br#"{"data":{}}"#,
            br#"{"data":{"events":[{"eventType":"x"}]}}"#,
        ] {
            assert!(
                matches!(
                    ingress().split(body, Utc::now()),
                    Err(IngressError::BadRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn an_empty_event_list_is_accepted() {
        let split = ingress().split(&delivery(vec![]), Utc::now()).unwrap();
        assert!(split.triggers.is_empty());
    }
}
