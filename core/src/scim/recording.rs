//! The SCIM calls the worker makes, written down as an operator reads them: method, path and
//! attribute names, never a value. `sync` reports what it did with them; `plan` what it would do.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use super::{PatchOp, ScimError, ScimRecord, ScimTarget, UserPage};

/// One call to the target and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScimCall {
    pub method: &'static str,
    pub path: String,
    /// What the call carries, by name: a PATCH's paths, a POST's attributes, a member.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub answer: String,
}

impl ScimCall {
    /// Whether the call changes the target.
    pub fn writes(&self) -> bool {
        self.method != "GET"
    }

    /// Whether the call is about a user account (not a group).
    pub fn on_users(&self) -> bool {
        self.path.starts_with("/Users")
    }

    pub fn find_user(user_name: &str, result: &Result<Option<ScimRecord>, ScimError>) -> Self {
        Self::new(
            "GET",
            format!("/Users?filter=userName eq \"{user_name}\""),
            Vec::new(),
            match result {
                Ok(Some(r)) => format!(
                    "found {} ({}, externalId {})",
                    r.id,
                    match r.active {
                        Some(true) => "active",
                        Some(false) => "inactive",
                        None => "active unknown",
                    },
                    r.external_id.as_deref().unwrap_or("none")
                ),
                Ok(None) => "none".into(),
                Err(e) => format!("failed: {e}"),
            },
        )
    }

    pub fn create_user(resource: &Value, result: &Result<ScimRecord, ScimError>) -> Self {
        let names = resource
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| *k != "schemas")
            .cloned()
            .collect();
        Self::new(
            "POST",
            "/Users".into(),
            names,
            match result {
                Ok(r) => format!("created {}", r.id),
                Err(e) => format!("failed: {e}"),
            },
        )
    }

    pub fn patch_user(id: &str, ops: &[PatchOp], result: &Result<(), ScimError>) -> Self {
        let names = ops.iter().map(|op| op.path.clone()).collect();
        Self::new("PATCH", format!("/Users/{id}"), names, answered(result))
    }

    pub fn delete_user(id: &str, result: &Result<(), ScimError>) -> Self {
        Self::new(
            "DELETE",
            format!("/Users/{id}"),
            Vec::new(),
            answered(result),
        )
    }

    pub fn find_group(display_name: &str, result: &Result<Option<String>, ScimError>) -> Self {
        Self::new(
            "GET",
            format!("/Groups?filter=displayName eq \"{display_name}\""),
            Vec::new(),
            match result {
                Ok(Some(id)) => format!("found {id}"),
                Ok(None) => "none".into(),
                Err(e) => format!("failed: {e}"),
            },
        )
    }

    pub fn create_group(display_name: &str, result: &Result<String, ScimError>) -> Self {
        Self::new(
            "POST",
            "/Groups".into(),
            vec![display_name.to_string()],
            match result {
                Ok(id) => format!("created {id}"),
                Err(e) => format!("failed: {e}"),
            },
        )
    }

    pub fn delete_group(group_id: &str, result: &Result<(), ScimError>) -> Self {
        Self::new(
            "DELETE",
            format!("/Groups/{group_id}"),
            Vec::new(),
            answered(result),
        )
    }

    pub fn rename_group(
        group_id: &str,
        display_name: &str,
        result: &Result<(), ScimError>,
    ) -> Self {
        Self::new(
            "PATCH",
            format!("/Groups/{group_id}"),
            vec![format!("displayName {display_name}")],
            answered(result),
        )
    }

    pub fn member(
        group_id: &str,
        change: &str,
        user_id: &str,
        result: &Result<(), ScimError>,
    ) -> Self {
        Self::new(
            "PATCH",
            format!("/Groups/{group_id}"),
            vec![format!("{change} member {user_id}")],
            answered(result),
        )
    }

    fn new(method: &'static str, path: String, names: Vec<String>, answer: String) -> Self {
        Self {
            method,
            path,
            names,
            answer,
        }
    }
}

impl fmt::Display for ScimCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.names.is_empty() {
            write!(f, " ({})", self.names.join(", "))?;
        }
        write!(f, " -> {}", self.answer)
    }
}

fn answered<T>(result: &Result<T, ScimError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("failed: {e}"),
    }
}

/// The calls made so far, shared by whoever records them and whoever reports them.
#[derive(Debug, Default, Clone)]
pub struct CallLog(Arc<Mutex<Vec<ScimCall>>>);

impl CallLog {
    pub fn push(&self, call: ScimCall) {
        if let Ok(mut calls) = self.0.lock() {
            calls.push(call);
        }
    }

    /// How many calls are written down (a mark to read the later ones from).
    pub fn len(&self) -> usize {
        self.0.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The calls from `mark` on.
    pub fn since(&self, mark: usize) -> Vec<ScimCall> {
        self.0
            .lock()
            .map(|c| c.get(mark..).map(<[_]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// A target that makes every call and writes each one down (`sync`).
pub struct RecordingTarget {
    inner: Arc<dyn ScimTarget>,
    log: CallLog,
}

impl RecordingTarget {
    pub fn new(inner: Arc<dyn ScimTarget>) -> Self {
        Self {
            inner,
            log: CallLog::default(),
        }
    }

    pub fn log(&self) -> &CallLog {
        &self.log
    }
}

#[async_trait]
impl ScimTarget for RecordingTarget {
    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError> {
        let result = self.inner.find_user(user_name).await;
        self.log.push(ScimCall::find_user(user_name, &result));
        result
    }

    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError> {
        let result = self.inner.create_user(resource).await;
        self.log.push(ScimCall::create_user(resource, &result));
        result
    }

    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        let result = self.inner.patch_user(id, ops).await;
        self.log.push(ScimCall::patch_user(id, ops, &result));
        result
    }

    async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        let result = self.inner.delete_user(id).await;
        self.log.push(ScimCall::delete_user(id, &result));
        result
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError> {
        let result = self.inner.find_group(display_name).await;
        self.log.push(ScimCall::find_group(display_name, &result));
        result
    }

    async fn create_group(&self, display_name: &str) -> Result<String, ScimError> {
        let result = self.inner.create_group(display_name).await;
        self.log.push(ScimCall::create_group(display_name, &result));
        result
    }

    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError> {
        let result = self.inner.delete_group(group_id).await;
        self.log.push(ScimCall::delete_group(group_id, &result));
        result
    }

    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError> {
        let result = self.inner.rename_group(group_id, display_name).await;
        self.log
            .push(ScimCall::rename_group(group_id, display_name, &result));
        result
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let result = self.inner.add_member(group_id, user_id).await;
        self.log
            .push(ScimCall::member(group_id, "add", user_id, &result));
        result
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let result = self.inner.remove_member(group_id, user_id).await;
        self.log
            .push(ScimCall::member(group_id, "remove", user_id, &result));
        result
    }

    async fn probe(&self) -> Result<(), ScimError> {
        self.inner.probe().await
    }

    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError> {
        self.inner.list_users(start_index, count).await
    }
}
