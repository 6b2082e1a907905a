//! SCIM Groups on the Datadog fixture, as Datadog documents them: Groups are Teams ("Managed
//! Teams"); the list filters on `displayName eq` and `externalId eq` only; `PATCH` takes `add`,
//! `replace` and `remove`, with members added and the name replaced in the path-less form and a
//! member removed by `members[value eq "…"]`; a member must be an existing user (`type`, when
//! given, `User`); a second Team of the same name is a 409; `DELETE` answers 204.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::datadog::{errors, gate, list_response, Dd, Org};

/// The fixture's gate, and Teams not enabled for the org: no `/Groups` at all.
fn teams_gate(org: &mut Org, method: &str, path: &str, headers: &HeaderMap) -> Option<Response> {
    if let Some(r) = gate(org, method, path, headers) {
        return Some(r);
    }
    org.teams_off
        .then(|| errors(StatusCode::NOT_FOUND, "Not found"))
}

pub(crate) async fn list_groups(
    State(org): Dd,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = teams_gate(&mut org, "GET", "/Groups", &headers) {
        return r;
    }
    let filter = q.get("filter").cloned().unwrap_or_default();
    let wanted = ["displayName", "externalId"].iter().find_map(|attr| {
        let value = filter.strip_prefix(&format!("{attr} eq "))?;
        Some((*attr, value.trim_matches('"').to_string()))
    });
    let found = match wanted {
        Some((attr, value)) => org
            .teams
            .values()
            .filter(|t| t[attr] == value.as_str())
            .cloned()
            .collect(),
        None if filter.is_empty() => org.teams.values().cloned().collect(),
        None => return errors(StatusCode::BAD_REQUEST, "Bad Request"),
    };
    list_response(found)
}

/// The members a request names, each an existing user (`None`: refuse the request).
fn members_of(org: &Org, value: &Value) -> Option<Vec<Value>> {
    let mut members = Vec::new();
    for m in value.as_array()? {
        let id = m["value"].as_str()?;
        if m.get("type").is_some_and(|t| t != "User") || !org.users.contains_key(id) {
            return None;
        }
        members.push(json!({ "value": id, "type": "User" }));
    }
    Some(members)
}

pub(crate) async fn create_group(
    State(org): Dd,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = teams_gate(&mut org, "POST", "/Groups", &headers) {
        return r;
    }
    let Some(name) = body["displayName"].as_str().map(str::to_string) else {
        return errors(StatusCode::BAD_REQUEST, "Bad Request");
    };
    if org
        .teams
        .values()
        .any(|t| t["displayName"] == name.as_str())
    {
        return errors(StatusCode::CONFLICT, "Conflict");
    }
    let members = match body.get("members") {
        None => Vec::new(),
        Some(v) => match members_of(&org, v) {
            Some(m) => m,
            None => return errors(StatusCode::BAD_REQUEST, "Bad Request"),
        },
    };
    org.next_id += 1;
    let id = format!("00000000-0000-4000-9000-{:012}", org.next_id);
    let team = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": id,
        "displayName": name,
        "members": members,
        "meta": {"resourceType": "Group"}
    });
    org.teams.insert(id, team.clone());
    (StatusCode::CREATED, Json(team)).into_response()
}

pub(crate) async fn get_group(
    State(org): Dd,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = teams_gate(&mut org, "GET", "/Groups/{id}", &headers) {
        return r;
    }
    match org.teams.get(&id) {
        Some(t) => Json(t.clone()).into_response(),
        None => errors(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// One PATCH operation on a Team, or why it is refused.
fn apply(org: &Org, team: &mut Value, op: &Value) -> Result<(), StatusCode> {
    let path = op["path"].as_str();
    match (op["op"].as_str(), path) {
        (Some("add"), None) | (Some("replace"), None) => {
            let value = op["value"].as_object().ok_or(StatusCode::BAD_REQUEST)?;
            for (k, v) in value {
                match k.as_str() {
                    "displayName" => team["displayName"] = v.clone(),
                    "members" => {
                        let new = members_of(org, v).ok_or(StatusCode::BAD_REQUEST)?;
                        let members = team["members"]
                            .as_array_mut()
                            .ok_or(StatusCode::BAD_REQUEST)?;
                        if op["op"] == "replace" {
                            members.clear();
                        }
                        for m in new {
                            if !members.iter().any(|x| x["value"] == m["value"]) {
                                members.push(m);
                            }
                        }
                    }
                    _ => return Err(StatusCode::BAD_REQUEST),
                }
            }
            Ok(())
        }
        (Some("add"), Some("members")) => {
            let new = members_of(org, &op["value"]).ok_or(StatusCode::BAD_REQUEST)?;
            let members = team["members"]
                .as_array_mut()
                .ok_or(StatusCode::BAD_REQUEST)?;
            for m in new {
                if !members.iter().any(|x| x["value"] == m["value"]) {
                    members.push(m);
                }
            }
            Ok(())
        }
        (Some("replace"), Some("displayName")) => {
            team["displayName"] = op["value"].clone();
            Ok(())
        }
        (Some("remove"), Some(path)) => {
            let id = path
                .strip_prefix("members[value eq \"")
                .and_then(|rest| rest.strip_suffix("\"]"))
                .ok_or(StatusCode::BAD_REQUEST)?;
            let members = team["members"]
                .as_array_mut()
                .ok_or(StatusCode::BAD_REQUEST)?;
            members.retain(|m| m["value"] != id);
            Ok(())
        }
        _ => Err(StatusCode::BAD_REQUEST),
    }
}

pub(crate) async fn patch_group(
    State(org): Dd,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = teams_gate(&mut org, "PATCH", "/Groups/{id}", &headers) {
        return r;
    }
    let Some(mut team) = org.teams.get(&id).cloned() else {
        return errors(StatusCode::NOT_FOUND, "Not found");
    };
    for op in body["Operations"].as_array().into_iter().flatten() {
        if let Err(status) = apply(&org, &mut team, op) {
            return errors(status, "Bad Request");
        }
    }
    org.teams.insert(id, team.clone());
    Json(team).into_response()
}

pub(crate) async fn delete_group(
    State(org): Dd,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = teams_gate(&mut org, "DELETE", "/Groups/{id}", &headers) {
        return r;
    }
    match org.teams.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => errors(StatusCode::NOT_FOUND, "Not found"),
    }
}
