//! Target roles from IdP groups: which roles a user should hold, decided from the role groups
//! the directory says they are in. Pure: the worker reads membership, this names the roles.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// `okta.role_groups` and `entra.role_groups` (group id → roles) with `target.role_ids` as
/// the roles of a user in none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMap {
    by_group: BTreeMap<String, Vec<String>>,
    default: Vec<String>,
}

impl RoleMap {
    /// Okta group ids and Entra object ids never collide (`00g…` against GUIDs), so one map
    /// serves both directories.
    pub fn new(by_group: BTreeMap<String, Vec<String>>, default: Vec<String>) -> Self {
        Self { by_group, default }
    }

    /// Neither a mapping nor a default: the relay sends no roles and the target decides.
    pub fn is_empty(&self) -> bool {
        self.by_group.is_empty() && self.default.is_empty()
    }

    /// The roles for a member of `role_groups`: the union of every mapped group's roles, or
    /// the default when none is mapped. Sorted and without repeats, so the same membership
    /// always gives the same value and an unchanged one sends nothing.
    pub fn roles_for(&self, role_groups: &[String]) -> Vec<String> {
        let mut roles: Vec<String> = role_groups
            .iter()
            .filter_map(|g| self.by_group.get(g))
            .flatten()
            .cloned()
            .collect();
        if roles.is_empty() {
            roles = self.default.clone();
        }
        roles.sort();
        roles.dedup();
        roles
    }

    /// The SCIM `roles` attribute (RFC 7643 §4.1.2; Datadog: role objects by UUID).
    pub fn attribute(&self, role_groups: &[String]) -> Value {
        Value::Array(
            self.roles_for(role_groups)
                .into_iter()
                .map(|id| json!({ "value": id }))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> RoleMap {
        RoleMap::new(
            BTreeMap::from([
                ("00gADMINS".to_string(), vec!["admin".to_string()]),
                (
                    "00gSRE".to_string(),
                    vec!["standard".to_string(), "incident-commander".to_string()],
                ),
                ("00gREAD".to_string(), vec!["read-only".to_string()]),
            ]),
            vec!["read-only".to_string()],
        )
    }

    #[test]
    fn a_member_of_several_groups_gets_the_union_sorted_once() {
        let groups = ["00gSRE".to_string(), "00gADMINS".to_string()];
        assert_eq!(
            map().roles_for(&groups),
            ["admin", "incident-commander", "standard"]
        );
        // Order of membership does not change the value (nor its hash).
        let reversed = ["00gADMINS".to_string(), "00gSRE".to_string()];
        assert_eq!(map().roles_for(&groups), map().roles_for(&reversed));
    }

    #[test]
    fn a_member_of_no_mapped_group_gets_the_default() {
        assert_eq!(map().roles_for(&[]), ["read-only"]);
        assert_eq!(map().roles_for(&["00gOTHER".to_string()]), ["read-only"]);
        // A default role named by a group too is not repeated.
        assert_eq!(map().roles_for(&["00gREAD".to_string()]), ["read-only"]);
    }

    #[test]
    fn roles_are_role_objects_by_id() {
        assert_eq!(
            map().attribute(&["00gADMINS".to_string()]),
            json!([{ "value": "admin" }])
        );
        assert!(RoleMap::default().is_empty());
        assert!(!RoleMap::new(BTreeMap::new(), vec!["r".into()]).is_empty());
    }
}
