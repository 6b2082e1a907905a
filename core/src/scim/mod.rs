//! The SCIM side: what a user should look like on the target, the plan to get it there, and
//! the target's client.

#[cfg(feature = "outbound")]
pub mod datadog_invitations;
pub mod error;
pub mod gated;
#[cfg(feature = "outbound")]
pub mod http;
pub mod invitation;
pub mod mapping;
pub mod plan;
pub mod recording;
pub mod roles;
pub mod target;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

pub use error::{ScimError, ScimFailure};
pub use invitation::{InvitationApi, TargetUserStatus};
pub use mapping::{apply_attribute_map, desired_user};
pub use plan::{
    any_named, create_in_doubt, guard_owner, guard_protected, plan, plan_groups, plan_hard_delete,
    GroupPlan, ScimPlan, OWNER_PROTECTED, PROTECTED,
};
pub use recording::{CallLog, RecordingTarget, ScimCall};
pub use roles::RoleMap;
pub use target::{list_all_users, DryRunTarget, ListedUser, ScimRecord, ScimTarget, UserPage};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The user the target should hold, as SCIM paths and values (`active` kept apart because it is
/// the one attribute deactivation touches).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredUser {
    pub user_name: String,
    pub active: bool,
    /// Not to be provisioned yet or any more: not active in the IdP yet (Okta STAGED,
    /// PROVISIONED) or out of scope. No account is created, and an account the relay never
    /// recorded is not touched; one it recorded is deactivated.
    pub pending: bool,
    pub attributes: BTreeMap<String, Value>,
    /// The configured IdP groups the user is in (IdP group id → display name), when group
    /// sync is on.
    pub groups: BTreeMap<String, String>,
    /// The IdP's word for the status, recorded in state.
    pub lifecycle: String,
}

impl DesiredUser {
    /// The resource for `POST /Users`: dotted paths become nested objects, enterprise
    /// extension paths go under their schema URN.
    pub fn to_resource(&self) -> Value {
        let mut resource = Map::new();
        let mut schemas = vec![json!(USER_SCHEMA)];
        for (path, value) in &self.attributes {
            if let Some(field) = path.strip_prefix(&format!("{ENTERPRISE_SCHEMA}:")) {
                let ext = resource
                    .entry(ENTERPRISE_SCHEMA.to_string())
                    .or_insert_with(|| json!({}));
                if let Some(ext) = ext.as_object_mut() {
                    ext.insert(field.to_string(), value.clone());
                }
                if schemas.len() == 1 {
                    schemas.push(json!(ENTERPRISE_SCHEMA));
                }
            } else if let Some((parent, child)) = path.split_once('.') {
                let obj = resource
                    .entry(parent.to_string())
                    .or_insert_with(|| json!({}));
                if let Some(obj) = obj.as_object_mut() {
                    obj.insert(child.to_string(), value.clone());
                }
            } else {
                resource.insert(path.clone(), value.clone());
            }
        }
        resource.insert("active".into(), json!(self.active));
        resource.insert("schemas".into(), Value::Array(schemas));
        Value::Object(resource)
    }
}

/// One operation of a SCIM PATCH request (RFC 7644 §3.5.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: PatchKind,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    Add,
    Replace,
    Remove,
}

impl PatchOp {
    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: PatchKind::Replace,
            path: path.into(),
            value: Some(value),
        }
    }

    pub fn add(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: PatchKind::Add,
            path: path.into(),
            value: Some(value),
        }
    }

    pub fn remove(path: impl Into<String>) -> Self {
        Self {
            op: PatchKind::Remove,
            path: path.into(),
            value: None,
        }
    }
}

/// The body of a PATCH request.
pub fn patch_body(ops: &[PatchOp]) -> Value {
    json!({ "schemas": [PATCH_SCHEMA], "Operations": ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_nests_dotted_paths_and_the_enterprise_extension() {
        let user = DesiredUser {
            user_name: "a@example.com".into(),
            active: true,
            pending: false,
            attributes: BTreeMap::from([
                ("userName".into(), json!("a@example.com")),
                ("name.givenName".into(), json!("A")),
                ("name.familyName".into(), json!("B")),
                (format!("{ENTERPRISE_SCHEMA}:department"), json!("Ops")),
            ]),
            groups: BTreeMap::new(),
            lifecycle: "ACTIVE".into(),
        };
        let r = user.to_resource();
        assert_eq!(r["userName"], "a@example.com");
        assert_eq!(r["name"]["givenName"], "A");
        assert_eq!(r["name"]["familyName"], "B");
        assert_eq!(r[ENTERPRISE_SCHEMA]["department"], "Ops");
        assert_eq!(r["active"], true);
        assert_eq!(r["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
    }

    #[test]
    fn patch_body_is_an_rfc_patchop() {
        let body = patch_body(&[
            PatchOp::replace("active", json!(false)),
            PatchOp::remove("title"),
        ]);
        assert_eq!(
            body,
            json!({"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "replace", "path": "active", "value": false},
                {"op": "remove", "path": "title"}
            ]})
        );
    }
}
