//! One unit of work: "something happened to this user (or tenant) at this IdP".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Source, UserKey};

pub const ENVELOPE_VERSION: u8 = 1;
/// SQS allows 128 characters for group and deduplication ids.
pub const MAX_SQS_ID: usize = 128;

/// What a trigger is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// One user: the worker re-reads and converges them.
    User { user_id: String },
    /// A Graph subscription lifecycle event (`reauthorizationRequired`, `missed`, …): tenant-level
    /// work for the sweeper.
    Subscription { subscription_id: String },
    /// A Graph group changed (its members, typically): the sweeper reads which members changed
    /// and queues those users.
    Group { group_id: String },
}

/// What the event itself said about the user. Only used when no directory credentials are
/// configured (the local demo); otherwise the directory is the truth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// One unit of work: "something happened to this user at this IdP".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub v: u8,
    pub source: Source,
    pub tenant: String,
    pub subject: Subject,
    /// The IdP's id for the event (Okta: the LogEvent uuid; Graph: the notification's own `id`
    /// when it carries one, else one id per delivery, see `ingress::graph`).
    pub event_id: String,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<DateTime<Utc>>,
    pub received: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<EventHint>,
    /// The user as the sweeper's directory listing returned them (its triggers alone carry
    /// one): the worker takes it for its own read when [`ListedDirectoryUser::usable_for`] allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<Box<super::ListedDirectoryUser>>,
}

impl Trigger {
    /// Whether the event says the user may lose their account (a deactivation, a suspension, a
    /// deletion, an unassignment): the worker then reads the deprovisioning ledger with its
    /// first read. A guess that saves a request; any trigger can still deprovision.
    pub fn may_deprovision(&self) -> bool {
        const OKTA: &[&str] = &[
            "user.lifecycle.deactivate",
            "user.lifecycle.suspend",
            "user.lifecycle.delete.initiated",
            "application.user_membership.remove",
            "group.user_membership.remove",
        ];
        match self.source {
            Source::Okta => OKTA.contains(&self.event_type.as_str()),
            Source::Entra => self.event_type == "deleted",
        }
    }

    /// A trigger the relay makes itself for one user (an approved hold, `sync`, a preview):
    /// no published time, received `now`, no hint, so the worker re-reads the directory.
    pub fn for_user(key: &UserKey, event_type: &str, event_id: String, now: DateTime<Utc>) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            source: key.source,
            tenant: key.tenant.clone(),
            subject: Subject::User {
                user_id: key.user_id.clone(),
            },
            event_id,
            event_type: event_type.into(),
            published: None,
            received: now,
            hint: None,
            listed: None,
        }
    }

    fn subject_id(&self) -> &str {
        match &self.subject {
            Subject::User { user_id } => user_id,
            Subject::Subscription { subscription_id } => subscription_id,
            Subject::Group { group_id } => group_id,
        }
    }

    /// Work for one user is serialised: the FIFO message group is source/tenant/user.
    pub fn group_id(&self) -> String {
        fit_sqs_id(format!(
            "{}/{}/{}",
            self.source,
            self.tenant,
            self.subject_id()
        ))
    }

    /// One key per (event, user): a redelivered event is recognised, and an event naming two
    /// users gives two independent triggers.
    pub fn dedupe_key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.source,
            self.tenant,
            self.event_id,
            self.subject_id()
        )
    }
}

/// Keeps an id within SQS limits: short ids stay readable, long ones become a digest.
pub(crate) fn fit_sqs_id(id: String) -> String {
    let printable = id.chars().all(|c| c.is_ascii_graphic());
    if id.len() <= MAX_SQS_ID && printable {
        id
    } else {
        hex::encode(Sha256::digest(id.as_bytes()))
    }
}
