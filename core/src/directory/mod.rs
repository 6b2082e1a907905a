//! Reading the user's current truth from the IdP. Events are only triggers: the worker always
//! re-reads, so a forged or replayed event can at most re-sync a real user's real state.

#[cfg(feature = "outbound")]
pub mod client_assertion;
#[cfg(feature = "outbound")]
pub mod dpop;
#[cfg(feature = "outbound")]
pub mod graph;
#[cfg(feature = "outbound")]
pub mod okta;
#[cfg(feature = "outbound")]
pub mod okta_credential;
#[cfg(feature = "outbound")]
pub mod rate_limit;
pub mod subscription;

use async_trait::async_trait;

use crate::envelope::{EventHint, Trigger};

pub use crate::model::{DirectoryUser, IdpStatus, ListedDirectoryUser};

/// The scalar members of a JSON object, as text (for attribute mappings).
pub fn scalars(
    object: &serde_json::Map<String, serde_json::Value>,
) -> std::collections::BTreeMap<String, String> {
    object
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), text))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryRead {
    Found(Box<DirectoryUser>),
    /// The directory no longer returns the user (deleted, and possibly restorable: Okta's
    /// `delete.initiated`, Entra's soft delete).
    NotFound,
    /// Gone for good: Entra hard-deleted it (not even in `deletedItems`).
    HardDeleted,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// Timeouts, 5xx, 429, and a rejected directory credential (an operator can fix that; the
    /// triggers must wait, not be dropped).
    #[error("directory unavailable: {0}")]
    Retryable(String),
    #[error("directory answer unusable: {0}")]
    Permanent(String),
    /// 401/403: the directory refuses the relay's credential. Every read would fail alike, so
    /// the workers pause (as for the target's) and the triggers wait, costing them no attempt.
    #[error("directory refused the relay's credential: {0}")]
    Refused(String),
    /// The IdP's rate limit (a 429, or the relay's share of Okta's window used up) asks for a
    /// wait longer than the caller would sleep: the trigger comes back after `wait`, costing
    /// it no attempt.
    #[error("directory rate limit: {reason}")]
    Throttled {
        reason: String,
        wait: std::time::Duration,
    },
}

/// What a directory API's status code says, before its body is read.
#[cfg(feature = "outbound")]
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Found,
    NotFound,
    /// 401/403: the relay's directory credential is refused.
    CredentialRejected,
}

/// The status table shared by the directory readers: 429 and 5xx are retryable, other
/// unexpected codes are permanent.
#[cfg(feature = "outbound")]
fn answer(idp: &str, status: u16) -> Result<Answer, DirectoryError> {
    match status {
        200 => Ok(Answer::Found),
        404 => Ok(Answer::NotFound),
        401 | 403 => Ok(Answer::CredentialRejected),
        s if s == 429 || s >= 500 => Err(DirectoryError::Retryable(format!("{idp} answered {s}"))),
        s => Err(DirectoryError::Permanent(format!("{idp} answered {s}"))),
    }
}

#[async_trait]
pub trait Directory: Send + Sync {
    async fn read_user(&self, user_id: &str) -> Result<DirectoryRead, DirectoryError>;

    /// Whether the user is in the provisioning scope (assigned to the app, or a member of one
    /// of the configured groups), and which of those groups they are in: read from the
    /// directory, never from the event.
    async fn membership(&self, user_id: &str) -> Result<Membership, DirectoryError>;
}

/// The users a directory changed since a stored position: the sweeper's catch-up on events
/// that never arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// Every user changed or removed since the position, once each. Only ids: the worker
    /// re-reads each one, as it does for a webhook.
    pub user_ids: Vec<String>,
    /// Where the next pass starts (Graph: the deltaLink; Okta: a `lastUpdated` time).
    pub cursor: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    /// The stored position is no longer valid (Graph: `410 Gone`, an expired delta token): the
    /// next read must be a full one.
    #[error("the stored directory position expired; a full pass is needed")]
    CursorExpired,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// What the pages were handed to failed with them (the queue refused a page's triggers).
    #[error("{0}")]
    Sink(String),
}

/// A directory's change feed. A position is only ever returned for a read that got every
/// page: a partial read would look like "nobody else changed".
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Changes since `cursor`; `None` reads every user (a full pass).
    async fn changes_since(
        &self,
        cursor: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<DirectoryChanges, FeedError>;

    /// The same read, handed to `sink` page by page as it is read (a pass over a large
    /// directory then holds one page at a time), with whole users where the listing carries
    /// them. It ends with the next position once every page was read, or, when the sink asks
    /// to pause (the sweeper's time runs low) and the feed can resume, with where to resume
    /// (`resume`, on the next run). What the sink took before an error stays taken: it can only
    /// be a re-check. By default: one page of ids at the end, never paused.
    async fn read_changes(
        &self,
        cursor: Option<&str>,
        resume: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
        sink: &mut dyn ListingSink,
    ) -> Result<ReadEnd, FeedError> {
        let _ = resume;
        let changes = self.changes_since(cursor, now).await?;
        sink.page(changes.user_ids.into_iter().map(Listing::id).collect())
            .await?;
        Ok(ReadEnd::Done {
            cursor: changes.cursor,
        })
    }
}

/// [`ChangeFeed::changes_since`] for a feed that reads page by page: its whole read, never
/// paused (the sink never asks), as one set of ids. `idp` names it in the error.
pub async fn changes_by_pages(
    feed: &(impl ChangeFeed + ?Sized),
    cursor: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
    idp: &str,
) -> Result<DirectoryChanges, FeedError> {
    let mut ids = ListedIds::default();
    match feed.read_changes(cursor, None, now, &mut ids).await? {
        ReadEnd::Done { cursor } => Ok(DirectoryChanges {
            user_ids: unique_ids(ids.0),
            cursor,
        }),
        ReadEnd::Paused { .. } => Err(DirectoryError::Permanent(format!(
            "the {idp} listing paused without being asked to"
        ))
        .into()),
    }
}

/// How [`ChangeFeed::read_changes`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// Every page read: where the next pass starts.
    Done { cursor: String },
    /// Paused at the sink's asking: where this pass goes on (the feed's own token).
    Paused { resume: String },
}

/// Whether a feed reads on after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    /// The reader's time runs low: stop after this page if the feed can resume.
    Pause,
}

/// One user a change feed listed: the id, and the whole user when the listing returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub id: String,
    pub user: Option<Box<DirectoryUser>>,
}

impl Listing {
    pub fn id(id: String) -> Self {
        Self { id, user: None }
    }
}

/// Where [`ChangeFeed::read_changes`] puts each page.
#[async_trait]
pub trait ListingSink: Send {
    async fn page(&mut self, page: Vec<Listing>) -> Result<Flow, FeedError>;
}

/// A sink that keeps the ids, in order.
#[derive(Debug, Default)]
pub struct ListedIds(pub Vec<String>);

#[async_trait]
impl ListingSink for ListedIds {
    async fn page(&mut self, page: Vec<Listing>) -> Result<Flow, FeedError> {
        self.0.extend(page.into_iter().map(|l| l.id));
        Ok(Flow::More)
    }
}

/// Keeps the first of each id, in order.
pub fn unique_ids(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// A configured IdP group the user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryGroup {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub in_scope: bool,
    /// The configured scope groups the user is a member of (the ones mirrored).
    pub groups: Vec<DirectoryGroup>,
    /// The role-mapped groups (`role_groups`) the user is a member of, by IdP id.
    pub role_groups: Vec<String>,
}

impl Membership {
    pub fn everyone() -> Self {
        Self {
            in_scope: true,
            groups: Vec::new(),
            role_groups: Vec::new(),
        }
    }
}

/// Who is provisioned: everyone when nothing is configured; otherwise the users assigned to the
/// Okta app or members of any of the groups. Role groups are read too, but only for the roles
/// they give: being in one puts nobody in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub app_id: Option<String>,
    pub group_ids: Vec<String>,
    pub role_group_ids: Vec<String>,
}

impl Scope {
    pub fn new(app_id: Option<String>, group_ids: Vec<String>) -> Self {
        Self {
            app_id,
            group_ids,
            role_group_ids: Vec::new(),
        }
    }

    /// The groups whose membership decides a user's roles (`role_groups`' keys).
    pub fn with_role_groups(mut self, role_group_ids: Vec<String>) -> Self {
        self.role_group_ids = role_group_ids;
        self
    }

    pub fn is_everyone(&self) -> bool {
        self.app_id.is_none() && self.group_ids.is_empty()
    }

    /// Nothing to read: everyone is in scope and no group gives a role.
    pub fn reads_nothing(&self) -> bool {
        self.is_everyone() && self.role_group_ids.is_empty()
    }

    /// Every group whose membership the relay reads: scope groups, then role groups.
    pub fn watched_groups(&self) -> Vec<String> {
        unique_ids(
            self.group_ids
                .iter()
                .chain(&self.role_group_ids)
                .cloned()
                .collect(),
        )
    }
}

/// Without directory credentials (the local demo) the worker can only use what the event said.
/// Okta events name the user (`alternateId`, `displayName`) and the event type tells the status.
pub fn user_from_event(trigger: &Trigger, user_id: &str) -> Option<DirectoryUser> {
    let EventHint {
        login,
        display_name,
    } = trigger.hint.clone()?;
    let login = login.filter(|l| !l.is_empty())?;
    let status = match trigger.event_type.as_str() {
        "user.lifecycle.suspend" => IdpStatus::Suspended,
        "user.lifecycle.deactivate" | "user.lifecycle.delete.initiated" => IdpStatus::Inactive,
        _ => IdpStatus::Active,
    };
    Some(DirectoryUser {
        id: user_id.to_string(),
        email: login.contains('@').then(|| login.clone()),
        login,
        display_name,
        status: Some(status),
        raw_status: format!("event:{}", trigger.event_type),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Source, Subject, ENVELOPE_VERSION};

    fn trigger(event_type: &str, hint: Option<EventHint>) -> Trigger {
        Trigger {
            v: ENVELOPE_VERSION,
            source: Source::Okta,
            tenant: "t".into(),
            subject: Subject::User {
                user_id: "00u1".into(),
            },
            event_id: "e".into(),
            event_type: event_type.into(),
            published: None,
            received: chrono::Utc::now(),
            hint,
            listed: None,
        }
    }

    #[cfg(feature = "outbound")]
    #[test]
    fn directory_status_codes_are_classified_once_for_both_idps() {
        assert_eq!(answer("Okta", 200), Ok(Answer::Found));
        assert_eq!(answer("Okta", 404), Ok(Answer::NotFound));
        assert_eq!(answer("Graph", 401), Ok(Answer::CredentialRejected));
        assert_eq!(answer("Graph", 403), Ok(Answer::CredentialRejected));
        assert!(matches!(
            answer("Okta", 429),
            Err(DirectoryError::Retryable(_))
        ));
        assert!(matches!(
            answer("Okta", 503),
            Err(DirectoryError::Retryable(_))
        ));
        assert!(matches!(
            answer("Graph", 400),
            Err(DirectoryError::Permanent(_))
        ));
    }

    #[test]
    fn no_app_and_no_groups_is_everyone() {
        assert!(Scope::new(None, Vec::new()).is_everyone());
        assert!(!Scope::new(Some("0oa1".into()), Vec::new()).is_everyone());
        assert!(!Scope::new(None, vec!["g".into()]).is_everyone());
    }

    #[test]
    fn the_event_type_decides_the_status_of_a_fallback_user() {
        let hint = Some(EventHint {
            login: Some("a@example.com".into()),
            display_name: Some("A".into()),
        });
        let created =
            user_from_event(&trigger("user.lifecycle.create", hint.clone()), "00u1").unwrap();
        assert_eq!(created.status, Some(IdpStatus::Active));
        assert_eq!(created.email.as_deref(), Some("a@example.com"));
        let gone = user_from_event(&trigger("user.lifecycle.deactivate", hint), "00u1").unwrap();
        assert_eq!(gone.status, Some(IdpStatus::Inactive));
        assert!(user_from_event(&trigger("user.lifecycle.create", None), "00u1").is_none());
    }
}
