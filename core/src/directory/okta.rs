//! Okta Users API: `GET /api/v1/users/{id}` with an SSWS token.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::okta_credential::OktaCredential;
use super::rate_limit::{
    okta_bucket, throttle_wait, throttled, RateBudget, SWEEPER_PATIENCE, WORKER_PATIENCE,
};
use super::{
    answer, unique_ids, Answer, ChangeFeed, Directory, DirectoryChanges, DirectoryError,
    DirectoryGroup, DirectoryRead, DirectoryUser, FeedError, Flow, IdpStatus, Listing, ListingSink,
    Membership, ReadEnd, Scope,
};

/// Okta's own OAuth apps take half of a bucket by default; so does the relay.
pub const DEFAULT_RATE_LIMIT_PERCENT: u64 = 50;

pub struct OktaDirectory {
    http: reqwest::Client,
    org_url: String,
    credential: OktaCredential,
    scope: Scope,
    /// Set once the configured app and groups were seen to exist.
    scope_checked: tokio::sync::OnceCell<()>,
    budget: RateBudget,
}

/// A throttled read is tried this many times in place (each after its wait) at most.
const THROTTLED_ATTEMPTS: u32 = 3;

#[derive(Deserialize)]
struct OktaGroup {
    id: String,
    #[serde(default)]
    profile: OktaGroupProfile,
}

#[derive(Deserialize, Default)]
struct OktaGroupProfile {
    #[serde(default)]
    name: Option<String>,
}

impl std::fmt::Debug for OktaDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaDirectory")
            .field("org_url", &self.org_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct OktaUser {
    id: String,
    status: String,
    #[serde(default)]
    profile: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OktaProfile {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    employee_number: Option<String>,
    #[serde(default)]
    department: Option<String>,
}

/// Okta's statuses, explicitly: only these count as a working account.
pub fn okta_status(status: &str) -> IdpStatus {
    match status {
        "ACTIVE" | "RECOVERY" | "PASSWORD_EXPIRED" | "LOCKED_OUT" => IdpStatus::Active,
        "STAGED" | "PROVISIONED" => IdpStatus::Pending,
        "SUSPENDED" => IdpStatus::Suspended,
        // SUSPENDED, DEPROVISIONED, and anything Okta adds later: not active.
        _ => IdpStatus::Inactive,
    }
}

impl OktaDirectory {
    pub fn new(
        org_url: &str,
        credential: OktaCredential,
        timeout: Duration,
    ) -> Result<Self, DirectoryError> {
        let http = crate::credentialed_http_client(timeout).map_err(DirectoryError::Permanent)?;
        Ok(Self {
            http,
            org_url: org_url.trim_end_matches('/').to_string(),
            credential,
            scope: Scope::default(),
            scope_checked: tokio::sync::OnceCell::new(),
            budget: RateBudget::new(DEFAULT_RATE_LIMIT_PERCENT),
        })
    }

    /// The share of each of Okta's rate limits the relay may use (`okta.rate_limit_percent`).
    pub fn with_rate_limit_share(mut self, percent: u64) -> Self {
        self.budget = RateBudget::new(percent);
        self
    }

    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, DirectoryError> {
        self.get_url(&format!("{}{path}", self.org_url)).await
    }

    /// A read for the worker: it waits in place for Okta's rate limit only briefly.
    async fn get_url(&self, url: &str) -> Result<reqwest::Response, DirectoryError> {
        self.get_within(url, WORKER_PATIENCE).await
    }

    /// A read within the relay's share of Okta's rate limit: a wait up to `patience` is slept
    /// here (before the call when the share is used, after a 429 until the window resets); a
    /// longer one is [`DirectoryError::Throttled`].
    pub(crate) async fn get_within(
        &self,
        url: &str,
        patience: std::time::Duration,
    ) -> Result<reqwest::Response, DirectoryError> {
        let bucket = okta_bucket(url);
        let mut reauthorized = false;
        let mut nonce_taken = false;
        for attempt in 1..=THROTTLED_ATTEMPTS {
            if let Some(wait) = self.budget.wait_before(&bucket, Utc::now()) {
                if wait > patience {
                    return Err(throttled(
                        "Okta",
                        &format!("the relay's share of /api/v1/{bucket} is used"),
                        wait,
                    ));
                }
                tokio::time::sleep(wait).await;
            }
            let authorization = self
                .credential
                .authorize(&self.http, &self.org_url, "GET", url)
                .await?;
            let resp = authorization
                .apply(self.http.get(url))
                .header("Accept", "application/json")
                .send()
                .await
                .map_err(|e| {
                    DirectoryError::Retryable(format!("Okta: {}", crate::transport_error(e)))
                })?;
            self.budget.observe(&bucket, resp.headers());
            if resp.status().as_u16() == 401
                && !nonce_taken
                && self.credential.learn_nonce(resp.headers()).await
            {
                // A DPoP-bound token: the API asked the proof to carry its nonce.
                nonce_taken = true;
                continue;
            }
            if resp.status().as_u16() == 401 && self.credential.forget().await && !reauthorized {
                // A service app's access token expired or revoked early: one more try with a
                // fresh token before the credential counts as refused (and pauses every worker).
                reauthorized = true;
                continue;
            }
            if resp.status().as_u16() != 429 {
                return Ok(resp);
            }
            let wait = throttle_wait(resp.headers(), Utc::now());
            if wait > patience || attempt == THROTTLED_ATTEMPTS {
                return Err(throttled(
                    "Okta",
                    &format!("/api/v1/{bucket} answered 429"),
                    wait,
                ));
            }
            tokio::time::sleep(wait).await;
        }
        Err(throttled("Okta", "no attempt left", WORKER_PATIENCE))
    }
}

impl OktaDirectory {
    /// The configured app and groups exist; otherwise a configuration error (permanent: the
    /// trigger is parked with the reason, and nobody is deactivated).
    async fn check_scope(&self) -> Result<(), DirectoryError> {
        let app = self
            .scope
            .app_id
            .iter()
            .map(|a| ("okta.app_id", format!("/api/v1/apps/{}", enc(a))));
        let groups = self
            .scope
            .group_ids
            .iter()
            .map(|g| ("okta.group_ids", format!("/api/v1/groups/{}", enc(g))));
        let role_groups = self
            .scope
            .role_group_ids
            .iter()
            .map(|g| ("okta.role_groups", format!("/api/v1/groups/{}", enc(g))));
        for (setting, path) in app.chain(groups).chain(role_groups) {
            let resp = self.get(&path).await?;
            match answer("Okta", resp.status().as_u16())? {
                Answer::Found => {}
                Answer::NotFound => {
                    return Err(DirectoryError::Permanent(format!(
                        "{setting} names something Okta does not have ({path}); fix the setting"
                    )))
                }
                Answer::CredentialRejected => return Err(self.rejected()),
            }
        }
        Ok(())
    }
}

fn enc(id: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
}

impl OktaDirectory {
    fn rejected(&self) -> DirectoryError {
        DirectoryError::Refused(format!(
            "Okta rejected the relay's credential; fix {}",
            self.credential.setting()
        ))
    }
}

#[async_trait]
impl Directory for OktaDirectory {
    async fn membership(&self, user_id: &str) -> Result<Membership, DirectoryError> {
        if self.scope.reads_nothing() {
            return Ok(Membership::everyone());
        }
        // A 404 below means "not assigned" only if the app exists: a misspelt app id must not
        // read as "nobody is in scope" and deactivate everyone.
        self.scope_checked
            .get_or_try_init(|| self.check_scope())
            .await?;
        let id = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
        let mut assigned = false;
        if let Some(app) = &self.scope.app_id {
            let app =
                percent_encoding::utf8_percent_encode(app, percent_encoding::NON_ALPHANUMERIC);
            let resp = self.get(&format!("/api/v1/apps/{app}/users/{id}")).await?;
            match answer("Okta", resp.status().as_u16())? {
                Answer::Found => assigned = true,
                Answer::NotFound => {}
                Answer::CredentialRejected => return Err(self.rejected()),
            }
        }
        let mut groups = Vec::new();
        let mut role_groups = Vec::new();
        if !self.scope.watched_groups().is_empty() {
            // Paged (200 a page at most, `Link: rel="next"`): a user in many groups may be in
            // scope through one on a later page, and must not be switched off for it.
            let mut url = format!("{}/api/v1/users/{id}/groups?limit=200", self.org_url);
            for _ in 0..MAX_PAGES {
                let resp = self.get_url(&url).await?;
                match answer("Okta", resp.status().as_u16())? {
                    Answer::Found => {}
                    // The user is gone: out of scope, and the read of the user says the rest.
                    Answer::NotFound => break,
                    Answer::CredentialRejected => return Err(self.rejected()),
                }
                let next = next_link(resp.headers())
                    .filter(|next| next.starts_with(&format!("{}/", self.org_url)));
                let page: Vec<OktaGroup> = resp.json().await.map_err(|e| {
                    DirectoryError::Retryable(format!("Okta groups are not readable: {e}"))
                })?;
                let empty = page.is_empty();
                for g in page {
                    if self.scope.role_group_ids.contains(&g.id) {
                        role_groups.push(g.id.clone());
                    }
                    if self.scope.group_ids.contains(&g.id) {
                        groups.push(DirectoryGroup {
                            name: g.profile.name.unwrap_or_else(|| g.id.clone()),
                            id: g.id,
                        });
                    }
                }
                match next {
                    Some(next) if !empty => url = next,
                    _ => break,
                }
            }
        }
        Ok(Membership {
            in_scope: self.scope.is_everyone() || assigned || !groups.is_empty(),
            groups,
            role_groups,
        })
    }

    async fn read_user(&self, user_id: &str) -> Result<DirectoryRead, DirectoryError> {
        let id = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
        let resp = self.get(&format!("/api/v1/users/{id}")).await?;
        match answer("Okta", resp.status().as_u16())? {
            Answer::Found => {}
            Answer::NotFound => return Ok(DirectoryRead::NotFound),
            Answer::CredentialRejected => return Err(self.rejected()),
        }
        let user: OktaUser = resp
            .json()
            .await
            .map_err(|e| DirectoryError::Retryable(format!("Okta user is not readable: {e}")))?;
        Ok(DirectoryRead::Found(Box::new(directory_user(user)?)))
    }
}

/// An Okta user object (as `/api/v1/users/{id}` and `/api/v1/users` both return it), normalised.
fn directory_user(user: OktaUser) -> Result<DirectoryUser, DirectoryError> {
    let extra = super::scalars(&user.profile);
    let p: OktaProfile = serde_json::from_value(serde_json::Value::Object(user.profile))
        .map_err(|e| DirectoryError::Retryable(format!("Okta profile is not readable: {e}")))?;
    Ok(DirectoryUser {
        id: user.id,
        login: p
            .login
            .clone()
            .or_else(|| p.email.clone())
            .unwrap_or_default(),
        email: p.email,
        given_name: p.first_name,
        family_name: p.last_name,
        display_name: p.display_name,
        title: p.title,
        employee_number: p.employee_number,
        department: p.department,
        status: Some(okta_status(&user.status)),
        raw_status: user.status,
        extra,
    })
}

/// Okta's search index lags its writes a little: each pass starts this long before the newest
/// change the last one saw, so a late-indexed change is still found (a re-read costs little).
const SEARCH_OVERLAP_SECONDS: i64 = 60;
/// Okta's largest page for `/api/v1/users`.
const PAGE_SIZE: &str = "200";
const MAX_PAGES: usize = 100_000;

/// A user of `/api/v1/users`: the whole user, and when it last changed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedOktaUser {
    #[serde(default)]
    last_updated: Option<DateTime<Utc>>,
    #[serde(flatten)]
    user: OktaUser,
}

/// The `rel="next"` URL of an RFC 8288 `Link` header, as Okta pages its lists.
pub fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|part| {
            part.split(';')
                .skip(1)
                .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
        })
        .and_then(|part| {
            let url = part.split(';').next()?.trim();
            Some(url.strip_prefix('<')?.strip_suffix('>')?.to_string())
        })
}

/// The cursor after a pass: the newest change seen, less the overlap, and never before the
/// cursor the pass started from.
fn next_cursor(since: DateTime<Utc>, newest: Option<DateTime<Utc>>) -> DateTime<Utc> {
    newest
        .map(|n| n - chrono::Duration::seconds(SEARCH_OVERLAP_SECONDS))
        .map_or(since, |n| n.max(since))
}

/// Where a paused pass over `/api/v1/users` goes on: the next page's URL (Okta's opaque
/// `after` cursor in it), and what the pass needs to compute its position at the end.
#[derive(Debug, Serialize, Deserialize)]
struct OktaResume {
    next: String,
    since: DateTime<Utc>,
    newest: Option<DateTime<Utc>>,
}

#[async_trait]
impl ChangeFeed for OktaDirectory {
    async fn changes_since(
        &self,
        cursor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<DirectoryChanges, FeedError> {
        super::changes_by_pages(self, cursor, now, "Okta user").await
    }

    /// `GET /api/v1/users?search=lastUpdated gt "…"`, following `Link: rel="next"`, each page
    /// handed on as read. The search covers every status (deactivated users too); the cursor
    /// is a time. Each user comes whole, as `/api/v1/users/{id}` would give it. A pause keeps
    /// the next page's link; a link Okta no longer takes reads as an expired position.
    async fn read_changes(
        &self,
        cursor: Option<&str>,
        resume: Option<&str>,
        _now: DateTime<Utc>,
        sink: &mut dyn ListingSink,
    ) -> Result<ReadEnd, FeedError> {
        let own = |url: &str| url.starts_with(&format!("{}/", self.org_url));
        let (mut url, since, mut newest) = match resume {
            Some(token) => {
                let r: OktaResume =
                    serde_json::from_str(token).map_err(|_| FeedError::CursorExpired)?;
                // The token only ever goes to the configured org.
                if !own(&r.next) {
                    return Err(FeedError::CursorExpired);
                }
                (r.next, r.since, r.newest)
            }
            None => {
                let since = match cursor {
                    Some(c) => DateTime::parse_from_rfc3339(c)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| FeedError::CursorExpired)?,
                    None => DateTime::UNIX_EPOCH,
                };
                let search = format!(
                    "lastUpdated gt \"{}\"",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                );
                let url = reqwest::Url::parse_with_params(
                    &format!("{}/api/v1/users", self.org_url),
                    &[("search", search.as_str()), ("limit", PAGE_SIZE)],
                )
                .map_err(|e| DirectoryError::Permanent(format!("okta.org_url: {e}")))?
                .to_string();
                (url, since, None)
            }
        };
        for _ in 0..MAX_PAGES {
            // A pass waits out the rate limit page by page rather than start over next run.
            let resp = self.get_within(&url, SWEEPER_PATIENCE).await?;
            match resp.status().as_u16() {
                // A resumed page whose `after` Okta no longer takes.
                400 if resume.is_some() => return Err(FeedError::CursorExpired),
                status => match answer("Okta", status)? {
                    Answer::Found => {}
                    Answer::NotFound => {
                        return Err(DirectoryError::Permanent(
                            "Okta has no /api/v1/users at okta.org_url".into(),
                        )
                        .into())
                    }
                    Answer::CredentialRejected => return Err(self.rejected().into()),
                },
            }
            let next = next_link(resp.headers());
            let page: Vec<ListedOktaUser> = resp.json().await.map_err(|e| {
                DirectoryError::Retryable(format!("Okta user list is not readable: {e}"))
            })?;
            let mut listings = Vec::with_capacity(page.len());
            for listed in page {
                newest = newest.max(listed.last_updated);
                let id = listed.user.id.clone();
                // A user the relay cannot make sense of is still re-checked: by a read of
                // its own.
                let user = directory_user(listed.user).ok().map(Box::new);
                listings.push(Listing { id, user });
            }
            let flow = sink.page(listings).await?;
            match next {
                Some(next) if own(&next) => {
                    if flow == Flow::Pause {
                        let resume = OktaResume {
                            next,
                            since,
                            newest,
                        };
                        return Ok(ReadEnd::Paused {
                            resume: serde_json::to_string(&resume).map_err(|e| {
                                DirectoryError::Permanent(format!("resume token: {e}"))
                            })?,
                        });
                    }
                    url = next
                }
                Some(_) => {
                    return Err(DirectoryError::Permanent(
                        "Okta's next page is on another host".into(),
                    )
                    .into())
                }
                None => {
                    return Ok(ReadEnd::Done {
                        cursor: next_cursor(since, newest)
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    })
                }
            }
        }
        Err(DirectoryError::Permanent("Okta user list never ended".into()).into())
    }
}

/// The System Log events that change who is in scope (or exists) without touching the user's
/// `lastUpdated`: joining or leaving the app or a group, and deletion.
const SCOPE_EVENTS: [&str; 5] = [
    "application.user_membership.add",
    "application.user_membership.remove",
    "group.user_membership.add",
    "group.user_membership.remove",
    "user.lifecycle.delete.initiated",
];
/// The log's largest page.
const LOG_PAGE: usize = 1000;
/// Events reach the System Log a little after they happen, and clocks differ: each pass starts
/// this far before the previous one ended (a re-read event only costs a re-check).
const LOG_OVERLAP_SECONDS: i64 = 300;
/// The System Log keeps 90 days: a position older than that reads from as far back as it can.
const LOG_RETENTION_DAYS: i64 = 89;
/// How far back the first pass reads.
const LOG_FIRST_LOOKBACK_HOURS: i64 = 24;

#[derive(Deserialize)]
struct LogEvent {
    #[serde(default)]
    outcome: Option<LogOutcome>,
    #[serde(default)]
    target: Vec<LogTarget>,
}

#[derive(Deserialize)]
struct LogOutcome {
    #[serde(default)]
    result: Option<String>,
}

#[derive(Deserialize)]
struct LogTarget {
    id: String,
    #[serde(rename = "type", default)]
    kind: String,
}

/// Users whose app or group membership changed, or who were deleted, from Okta's System Log
/// (`GET /api/v1/logs`): the changes that leave `lastUpdated` alone, caught when their event
/// hooks were lost.
pub struct OktaMembershipLog(pub std::sync::Arc<OktaDirectory>);

#[async_trait]
impl ChangeFeed for OktaMembershipLog {
    async fn changes_since(
        &self,
        cursor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<DirectoryChanges, FeedError> {
        let dir = &self.0;
        let since = match cursor {
            Some(c) => DateTime::parse_from_rfc3339(c)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| FeedError::CursorExpired)?,
            None => now - chrono::Duration::hours(LOG_FIRST_LOOKBACK_HOURS),
        }
        .max(now - chrono::Duration::days(LOG_RETENTION_DAYS));
        let filter = SCOPE_EVENTS
            .iter()
            .map(|t| format!("eventType eq \"{t}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // Bounded by `until`, the log's paging ends (without it Okta polls: a next link always).
        let mut url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/logs", dir.org_url),
            &[
                ("since", stamp(since).as_str()),
                ("until", stamp(now).as_str()),
                ("filter", filter.as_str()),
                ("sortOrder", "ASCENDING"),
                ("limit", &LOG_PAGE.to_string()),
            ],
        )
        .map_err(|e| DirectoryError::Permanent(format!("okta.org_url: {e}")))?
        .to_string();
        let mut ids = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = dir.get_within(&url, SWEEPER_PATIENCE).await?;
            match answer("Okta", resp.status().as_u16())? {
                Answer::Found => {}
                Answer::NotFound => {
                    return Err(DirectoryError::Permanent(
                        "Okta has no /api/v1/logs at okta.org_url".into(),
                    )
                    .into())
                }
                Answer::CredentialRejected => return Err(DirectoryError::Retryable(
                    "Okta refused to read the System Log; the API token needs read access to logs"
                        .into(),
                )
                .into()),
            }
            let next = next_link(resp.headers());
            let page: Vec<LogEvent> = resp.json().await.map_err(|e| {
                DirectoryError::Retryable(format!("Okta System Log page is not readable: {e}"))
            })?;
            let empty = page.is_empty();
            for event in page {
                let failed = event
                    .outcome
                    .and_then(|o| o.result)
                    .is_some_and(|r| r.eq_ignore_ascii_case("FAILURE"));
                if failed {
                    continue;
                }
                ids.extend(
                    event
                        .target
                        .into_iter()
                        .filter(|t| t.kind.eq_ignore_ascii_case("User"))
                        .map(|t| t.id),
                );
            }
            match next {
                // Bounded by `until`, the pages end; an empty one ends them too.
                Some(next) if !empty && next.starts_with(&format!("{}/", dir.org_url)) => {
                    url = next
                }
                _ => {
                    let resume = (now - chrono::Duration::seconds(LOG_OVERLAP_SECONDS)).max(since);
                    return Ok(DirectoryChanges {
                        user_ids: unique_ids(ids),
                        cursor: stamp(resume),
                    });
                }
            }
        }
        Err(DirectoryError::Permanent("Okta System Log never ended".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::ListedIds;

    #[tokio::test]
    async fn a_resumed_pass_never_sends_the_credential_to_another_host() {
        let okta = OktaDirectory::new(
            "https://acme.okta.com",
            OktaCredential::ApiToken(crate::secret::Secret::new("token")),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut ids = ListedIds::default();
        for next in [
            "https://evil.example/api/v1/users?after=1",
            "https://acme.okta.com.evil.example/api/v1/users?after=1",
            "not a token",
        ] {
            let token =
                serde_json::json!({"next": next, "since": "2026-01-01T00:00:00Z", "newest": null});
            let token = if next == "not a token" {
                next.to_string()
            } else {
                token.to_string()
            };
            let read = okta
                .read_changes(None, Some(&token), Utc::now(), &mut ids)
                .await;
            assert!(
                matches!(read, Err(FeedError::CursorExpired)),
                "{next}: {read:?}"
            );
        }
        assert!(ids.0.is_empty());
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut h = reqwest::header::HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            "<https://x.okta.com/api/v1/users?limit=200>; rel=\"self\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h), None);
        h.append(
            reqwest::header::LINK,
            "<https://x.okta.com/api/v1/users?after=00u2&limit=200>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x.okta.com/api/v1/users?after=00u2&limit=200")
        );
    }

    #[test]
    fn the_cursor_overlaps_the_newest_change_but_never_goes_back() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        assert_eq!(next_cursor(t(1000), Some(t(5000))), t(5000 - 60));
        assert_eq!(next_cursor(t(1000), Some(t(1010))), t(1000));
        assert_eq!(next_cursor(t(1000), None), t(1000));
    }

    #[test]
    fn okta_statuses_map_explicitly() {
        assert_eq!(okta_status("ACTIVE"), IdpStatus::Active);
        assert_eq!(okta_status("PASSWORD_EXPIRED"), IdpStatus::Active);
        assert_eq!(okta_status("STAGED"), IdpStatus::Pending);
        assert_eq!(okta_status("PROVISIONED"), IdpStatus::Pending);
        assert_eq!(okta_status("SUSPENDED"), IdpStatus::Suspended);
        assert_eq!(okta_status("DEPROVISIONED"), IdpStatus::Inactive);
        assert_eq!(okta_status("SOMETHING_NEW"), IdpStatus::Inactive);
    }
}
