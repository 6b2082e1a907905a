//! Directory user → the SCIM user the target should hold, per target profile.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{DesiredUser, ENTERPRISE_SCHEMA};
use crate::attributes::Expression;
use crate::config::TargetProfile;
use crate::directory::{DirectoryUser, IdpStatus};
use crate::envelope::Source;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("user {0} has no email address, which the target needs as userName")]
    NoEmail(String),
    #[error("user {0} has no login")]
    NoLogin(String),
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn full_name(user: &DirectoryUser) -> Option<String> {
    if let Some(display) = non_empty(&user.display_name) {
        return Some(display.to_string());
    }
    let parts: Vec<&str> = [non_empty(&user.given_name), non_empty(&user.family_name)]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn email_of(user: &DirectoryUser) -> Option<String> {
    non_empty(&user.email).map(str::to_string).or_else(|| {
        user.login
            .contains('@')
            .then(|| user.login.trim().to_string())
    })
}

fn work_email(email: &str) -> Value {
    json!([{ "value": email, "type": "work", "primary": true }])
}

/// Maps a directory user onto the profile's SCIM shape. The status decides `active`: only an
/// active IdP user gets a working account.
pub fn desired_user(
    profile: TargetProfile,
    user: &DirectoryUser,
) -> Result<DesiredUser, MappingError> {
    let active = user.status == Some(IdpStatus::Active);
    let mut attributes = BTreeMap::new();
    let user_name = match profile {
        // Datadog: userName is the lower-cased email; the name is `name.formatted` only.
        TargetProfile::Datadog | TargetProfile::DryRun => {
            let email = email_of(user).ok_or_else(|| MappingError::NoEmail(user.id.clone()))?;
            let user_name = email.to_lowercase();
            attributes.insert("userName".into(), json!(user_name));
            attributes.insert("emails".into(), work_email(&user_name));
            if let Some(name) = full_name(user) {
                attributes.insert("name.formatted".into(), json!(name));
            }
            if let Some(title) = non_empty(&user.title) {
                attributes.insert("title".into(), json!(title));
            }
            user_name
        }
        TargetProfile::Generic => {
            let login = user.login.trim().to_lowercase();
            if login.is_empty() {
                return Err(MappingError::NoLogin(user.id.clone()));
            }
            attributes.insert("userName".into(), json!(login));
            attributes.insert("externalId".into(), json!(user.id));
            if let Some(email) = email_of(user) {
                attributes.insert("emails".into(), work_email(&email.to_lowercase()));
            }
            if let Some(v) = non_empty(&user.given_name) {
                attributes.insert("name.givenName".into(), json!(v));
            }
            if let Some(v) = non_empty(&user.family_name) {
                attributes.insert("name.familyName".into(), json!(v));
            }
            if let Some(name) = full_name(user) {
                attributes.insert("name.formatted".into(), json!(name.clone()));
                attributes.insert("displayName".into(), json!(name));
            }
            if let Some(v) = non_empty(&user.title) {
                attributes.insert("title".into(), json!(v));
            }
            if let Some(v) = non_empty(&user.employee_number) {
                attributes.insert(format!("{ENTERPRISE_SCHEMA}:employeeNumber"), json!(v));
            }
            if let Some(v) = non_empty(&user.department) {
                attributes.insert(format!("{ENTERPRISE_SCHEMA}:department"), json!(v));
            }
            login
        }
    };
    Ok(DesiredUser {
        user_name,
        active,
        pending: user.status == Some(IdpStatus::Pending),
        attributes,
        groups: BTreeMap::new(),
        lifecycle: user.raw_status.clone(),
    })
}

/// The IdP attribute a mapping names for users of `source`: `okta:name` and `entra:name` apply
/// to that IdP only, a bare `name` to both.
pub fn mapped_attribute(source: Source, attribute: &str) -> Option<&str> {
    match attribute.split_once(':') {
        Some(("okta", name)) => (source == Source::Okta).then_some(name),
        Some(("entra", name)) => (source == Source::Entra).then_some(name),
        _ => Some(attribute),
    }
}

/// Applies `target.attributes` over the profile's defaults: each SCIM path takes its
/// expression's value over the IdP's attributes, and is cleared when it has none. A mapping of
/// one attribute of the other IdP (`entra:x` for an Okta user) leaves the path alone.
pub fn apply_attribute_map(
    desired: &mut DesiredUser,
    map: &BTreeMap<String, Expression>,
    source: Source,
    user: &DirectoryUser,
) {
    let lookup = |name: &str| user.extra.get(name).cloned();
    for (path, expression) in map {
        if !expression.applies_to(source) {
            continue;
        }
        let value = expression.evaluate(source, &lookup);
        let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty());
        match (path.as_str(), value) {
            ("userName", Some(v)) => {
                desired.user_name = v.to_lowercase();
                desired
                    .attributes
                    .insert(path.clone(), json!(desired.user_name));
            }
            // Without a userName there is no user: keep the profile's.
            ("userName", None) => {}
            ("emails", Some(v)) => {
                desired
                    .attributes
                    .insert(path.clone(), work_email(&v.to_lowercase()));
            }
            (_, Some(v)) => {
                desired.attributes.insert(path.clone(), json!(v));
            }
            (_, None) => {
                desired.attributes.remove(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane(status: IdpStatus) -> DirectoryUser {
        DirectoryUser {
            id: "00u1".into(),
            login: "Jane.Doe@Example.com".into(),
            email: Some("Jane.Doe@Example.com".into()),
            given_name: Some("Jane".into()),
            family_name: Some("Doe".into()),
            display_name: None,
            title: Some("Engineer".into()),
            employee_number: Some("42".into()),
            department: Some("R&D".into()),
            status: Some(status),
            raw_status: "ACTIVE".into(),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn datadog_profile_uses_the_lowercased_email_and_formatted_name() {
        let u = desired_user(TargetProfile::Datadog, &jane(IdpStatus::Active)).unwrap();
        assert_eq!(u.user_name, "jane.doe@example.com");
        assert!(u.active);
        assert_eq!(u.attributes["name.formatted"], "Jane Doe");
        assert_eq!(
            u.attributes["emails"],
            json!([{"value": "jane.doe@example.com", "type": "work", "primary": true}])
        );
        assert_eq!(u.attributes["title"], "Engineer");
        assert!(!u.attributes.contains_key("name.givenName"));
        assert!(!u.attributes.contains_key("externalId"));
    }

    #[test]
    fn generic_profile_carries_names_external_id_and_enterprise_fields() {
        let u = desired_user(TargetProfile::Generic, &jane(IdpStatus::Active)).unwrap();
        assert_eq!(u.attributes["externalId"], "00u1");
        assert_eq!(u.attributes["name.givenName"], "Jane");
        assert_eq!(u.attributes["displayName"], "Jane Doe");
        assert_eq!(
            u.attributes[&format!("{ENTERPRISE_SCHEMA}:department")],
            "R&D"
        );
    }

    #[test]
    fn only_an_active_idp_user_is_active_on_the_target() {
        for (status, active) in [
            (IdpStatus::Active, true),
            (IdpStatus::Pending, false),
            (IdpStatus::Inactive, false),
        ] {
            assert_eq!(
                desired_user(TargetProfile::Datadog, &jane(status))
                    .unwrap()
                    .active,
                active
            );
        }
    }

    #[test]
    fn a_user_without_any_email_cannot_be_mapped_for_datadog() {
        let mut u = jane(IdpStatus::Active);
        u.email = None;
        u.login = "jdoe".into();
        assert_eq!(
            desired_user(TargetProfile::Datadog, &u),
            Err(MappingError::NoEmail("00u1".into()))
        );
        // The login is used when it is an address.
        u.login = "J@x.io".into();
        assert_eq!(
            desired_user(TargetProfile::Datadog, &u).unwrap().user_name,
            "j@x.io"
        );
    }

    #[test]
    fn the_attribute_map_overrides_defaults_and_clears_missing_values() {
        let mut user = jane(IdpStatus::Active);
        user.extra = BTreeMap::from([
            ("jobCode".to_string(), "J-7".to_string()),
            ("costCenter".to_string(), "CC-42".to_string()),
            ("workEmail".to_string(), "JD@Work.example".to_string()),
        ]);
        let mut d = desired_user(TargetProfile::Generic, &user).unwrap();
        let map: BTreeMap<String, Expression> = [
            ("title".to_string(), "okta:jobCode"),
            ("displayName".to_string(), "entra:onlyForEntra"),
            (format!("{ENTERPRISE_SCHEMA}:costCenter"), "costCenter"),
            (format!("{ENTERPRISE_SCHEMA}:department"), "missing"),
            ("userName".to_string(), "workEmail"),
            (
                format!("{ENTERPRISE_SCHEMA}:division"),
                r#"Switch(costCenter, "Other", "CC-42", "Platform")"#,
            ),
        ]
        .into_iter()
        .map(|(path, text)| (path, crate::attributes::expression::parse(text).unwrap()))
        .collect();
        apply_attribute_map(&mut d, &map, Source::Okta, &user);
        assert_eq!(
            d.attributes["displayName"], "Jane Doe",
            "an entra: mapping leaves Okta users alone"
        );
        assert_eq!(d.attributes["title"], "J-7");
        assert_eq!(
            d.attributes[&format!("{ENTERPRISE_SCHEMA}:costCenter")],
            "CC-42"
        );
        assert!(!d
            .attributes
            .contains_key(&format!("{ENTERPRISE_SCHEMA}:department")));
        assert_eq!(
            d.attributes[&format!("{ENTERPRISE_SCHEMA}:division")],
            "Platform"
        );
        assert_eq!(d.user_name, "jd@work.example");
        assert_eq!(d.attributes["userName"], "jd@work.example");
    }

    #[test]
    fn display_name_wins_over_given_and_family() {
        let mut u = jane(IdpStatus::Active);
        u.display_name = Some("JD".into());
        assert_eq!(
            desired_user(TargetProfile::Datadog, &u).unwrap().attributes["name.formatted"],
            "JD"
        );
    }
}
