//! The target service provider, as the worker sees it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{patch_body, PatchOp, ScimError};

/// One page of the target's users (`GET /Users?startIndex=…&count=…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPage {
    pub users: Vec<ListedUser>,
    /// `totalResults`: how many the target has in all.
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUser {
    pub id: String,
    pub user_name: String,
    pub active: Option<bool>,
    /// The IdP's id the account was made for, where the target keeps `externalId`.
    pub external_id: Option<String>,
    /// The resource as listed, so a preview can tell which attributes an adoption would change.
    pub resource: Value,
}

impl ListedUser {
    /// The listed user of a SCIM User resource; `None` without an id or a userName.
    pub fn from_resource(resource: &Value) -> Option<Self> {
        let record = ScimRecord::from_resource(resource)?;
        Some(Self {
            id: record.id,
            user_name: resource.get("userName")?.as_str()?.to_string(),
            active: record.active,
            external_id: record.external_id,
            resource: resource.clone(),
        })
    }

    /// The look-up's view of this account (what the worker acts on).
    pub fn record(&self) -> ScimRecord {
        ScimRecord {
            id: self.id.clone(),
            active: self.active,
            external_id: self.external_id.clone(),
        }
    }
}

/// Every user the target has, page by page (`GET /Users?startIndex=…`): the drift report's and
/// the plan's view of the target. Stops at an empty page or at `totalResults`.
pub async fn list_all_users(target: &dyn ScimTarget) -> Result<Vec<ListedUser>, ScimError> {
    const PAGE: u32 = 100;
    const MAX_PAGES: u32 = 10_000;
    let mut users = Vec::new();
    let mut start = 1;
    for _ in 0..MAX_PAGES {
        let page = target.list_users(start, PAGE).await?;
        let got = page.users.len() as u32;
        users.extend(page.users);
        start += got;
        if got == 0 || start > page.total {
            break;
        }
    }
    Ok(users)
}

/// What the worker needs to know of an existing target user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimRecord {
    pub id: String,
    pub active: Option<bool>,
    /// The IdP's id the account was made for, where the target keeps `externalId`.
    pub external_id: Option<String>,
}

impl ScimRecord {
    /// The record of a SCIM User resource; `None` without an id.
    pub fn from_resource(resource: &Value) -> Option<Self> {
        Some(Self {
            id: resource.get("id")?.as_str()?.to_string(),
            active: resource.get("active").and_then(Value::as_bool),
            external_id: resource
                .get("externalId")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

/// The account a `userName eq` look-up found, from the resources the target answered. Only a
/// resource whose userName is the one asked for counts (not case-exact, RFC 7643 §4.1.1): a
/// provider that ignores or misreads the filter answers with other people's accounts, and the
/// relay must never adopt, change or deactivate one of those. Two that match are refused.
pub fn matching_user(
    candidates: &[Value],
    user_name: &str,
) -> Result<Option<ScimRecord>, ScimError> {
    let matching: Vec<ScimRecord> = candidates
        .iter()
        .filter(|u| {
            u.get("userName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.to_lowercase() == user_name.to_lowercase())
        })
        .filter_map(ScimRecord::from_resource)
        .collect();
    if matching.len() > 1 {
        return Err(ScimError {
            failure: super::ScimFailure::Ambiguous,
            status: None,
            detail: format!(
                "{} target users share one userName; refusing to pick one",
                matching.len()
            ),
            retry_after: None,
        });
    }
    Ok(matching.into_iter().next())
}

#[async_trait]
pub trait ScimTarget: Send + Sync {
    /// `GET /Users?filter=userName eq "…"`.
    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError>;
    /// `POST /Users`.
    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError>;
    /// `PATCH /Users/{id}`.
    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError>;
    /// `DELETE /Users/{id}`; a 404 (already gone) is success.
    async fn delete_user(&self, id: &str) -> Result<(), ScimError>;
    /// `GET /Groups?filter=displayName eq "…"`: the group's id.
    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError>;
    /// `POST /Groups` with no members: the new group's id.
    async fn create_group(&self, display_name: &str) -> Result<String, ScimError>;
    /// `PATCH /Groups/{id}` replacing `displayName`: the IdP renamed the group it mirrors.
    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError>;
    /// `DELETE /Groups/{id}`: only for a group this relay just created twice by a race.
    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError>;
    /// `PATCH /Groups/{id}` adding one member (adding a present member changes nothing).
    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError>;
    /// `PATCH /Groups/{id}` removing one member; "not a member" (noTarget) and a gone group
    /// are success.
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError>;
    /// A cheap authenticated read (a `userName` look-up that finds nobody): does the target
    /// still accept the credential?
    async fn probe(&self) -> Result<(), ScimError>;
    /// One page of every user the target has (1-based `start_index`), for the drift report.
    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError>;
    /// How long the target still asked every caller to wait, if it did (see `gated`).
    fn asked_to_wait(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Sends nothing: prints each request it would send, and remembers the users it "created" so
/// a second run of the same user plans a PATCH, as it would against a real target.
#[derive(Debug, Default)]
pub struct DryRunTarget {
    created: Mutex<BTreeMap<String, String>>,
}

impl DryRunTarget {
    fn print(method: &str, path: &str, body: Option<&Value>) {
        match body {
            Some(b) => println!("[dry-run] {method} {path} {b}"),
            None => println!("[dry-run] {method} {path}"),
        }
    }
}

#[async_trait]
impl ScimTarget for DryRunTarget {
    async fn probe(&self) -> Result<(), ScimError> {
        Self::print("GET", "/Users?startIndex=1&count=1", None);
        Ok(())
    }

    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError> {
        Self::print("DELETE", &format!("/Groups/{group_id}"), None);
        Ok(())
    }

    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError> {
        let op = PatchOp::replace("displayName", serde_json::json!(display_name));
        Self::print(
            "PATCH",
            &format!("/Groups/{group_id}"),
            Some(&patch_body(&[op])),
        );
        Ok(())
    }

    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError> {
        Self::print(
            "GET",
            &format!("/Users?startIndex={start_index}&count={count}"),
            None,
        );
        Ok(UserPage::default())
    }

    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError> {
        Self::print(
            "GET",
            &format!("/Users?filter=userName eq \"{user_name}\""),
            None,
        );
        let created = self
            .created
            .lock()
            .map_err(|_| ScimError::transport("poisoned"))?;
        Ok(created.get(user_name).map(|id| ScimRecord {
            id: id.clone(),
            active: Some(true),
            external_id: None,
        }))
    }

    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError> {
        Self::print("POST", "/Users", Some(resource));
        let user_name = resource["userName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = format!(
            "dry-run-{}",
            &hex::encode(Sha256::digest(user_name.as_bytes()))[..16]
        );
        let mut created = self
            .created
            .lock()
            .map_err(|_| ScimError::transport("poisoned"))?;
        created.insert(user_name, id.clone());
        Ok(ScimRecord {
            id,
            active: Some(true),
            external_id: None,
        })
    }

    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        Self::print("PATCH", &format!("/Users/{id}"), Some(&patch_body(ops)));
        Ok(())
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError> {
        Self::print(
            "GET",
            &format!("/Groups?filter=displayName eq \"{display_name}\""),
            None,
        );
        Ok(None)
    }

    async fn create_group(&self, display_name: &str) -> Result<String, ScimError> {
        Self::print(
            "POST",
            "/Groups",
            Some(&serde_json::json!({ "displayName": display_name, "members": [] })),
        );
        Ok(format!(
            "dry-run-group-{}",
            &hex::encode(Sha256::digest(display_name.as_bytes()))[..12]
        ))
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let op = PatchOp::add("members", serde_json::json!([{ "value": user_id }]));
        Self::print(
            "PATCH",
            &format!("/Groups/{group_id}"),
            Some(&patch_body(&[op])),
        );
        Ok(())
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let op = PatchOp::remove(format!("members[value eq \"{user_id}\"]"));
        Self::print(
            "PATCH",
            &format!("/Groups/{group_id}"),
            Some(&patch_body(&[op])),
        );
        Ok(())
    }

    async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        Self::print("DELETE", &format!("/Users/{id}"), None);
        let mut created = self
            .created
            .lock()
            .map_err(|_| ScimError::transport("poisoned"))?;
        created.retain(|_, v| v != id);
        Ok(())
    }
}
