//! RFC 7644 §3.5.2 PATCH applied to a JSON resource, as a service provider does: the
//! operations the relay sends (`replace`/`add`/`remove` of a plain, dotted, enterprise-extension
//! or value-filtered path, and path-less `add`/`replace`), all or nothing.

use serde_json::{Map, Value};

use crate::scim::{PatchKind, PatchOp, ENTERPRISE_SCHEMA, USER_SCHEMA};

/// Why a provider refuses a PATCH: the status and `scimType` of its error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub scim_type: &'static str,
    pub detail: String,
}

fn refuse(scim_type: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        scim_type,
        detail: detail.into(),
    }
}

/// Applies `ops` in order; on a refusal the resource is left as it was.
pub(crate) fn apply(resource: &mut Value, ops: &[PatchOp]) -> Result<(), Refusal> {
    let mut patched = resource.clone();
    for op in ops {
        apply_one(&mut patched, op)?;
    }
    *resource = patched;
    Ok(())
}

/// A parsed PATCH path: `attr`, `attr.sub`, `attr[f eq v]` or `attr[f eq v].sub`, optionally
/// under a schema URN.
#[derive(Debug, PartialEq)]
struct Path {
    /// The extension holding the attribute (`None`: the resource's root).
    extension: Option<String>,
    /// `None`: the whole root or extension object.
    attribute: Option<String>,
    filter: Option<(String, Value)>,
    sub: Option<String>,
}

fn parse(path: &str, resource: &Value) -> Result<Path, Refusal> {
    let path = path.trim();
    let is_schema = |urn: &str| {
        urn == ENTERPRISE_SCHEMA
            || resource["schemas"]
                .as_array()
                .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(urn)))
    };
    let (extension, rest) = if path.is_empty() || path == USER_SCHEMA {
        (None, "")
    } else if is_schema(path) {
        (Some(path.to_string()), "")
    } else if path.starts_with("urn:") {
        // `urn:…:User:department`: attribute names carry no colon (a filter value may).
        let head = path.split('[').next().unwrap_or(path);
        let cut = head.rfind(':').ok_or_else(|| refuse("invalidPath", path))?;
        let urn = &path[..cut];
        let extension = (urn != USER_SCHEMA).then(|| urn.to_string());
        (extension, &path[cut + 1..])
    } else {
        (None, path)
    };
    if rest.is_empty() {
        return Ok(Path {
            extension,
            attribute: None,
            filter: None,
            sub: None,
        });
    }
    let (attribute, filter, after) = match rest.split_once('[') {
        Some((attribute, tail)) => {
            let (filter, after) = tail
                .rsplit_once(']')
                .ok_or_else(|| refuse("invalidPath", rest))?;
            (attribute, Some(parse_filter(filter)?), after)
        }
        None => match rest.split_once('.') {
            Some((attribute, _)) => (attribute, None, &rest[attribute.len()..]),
            None => (rest, None, ""),
        },
    };
    let sub = match after.strip_prefix('.') {
        Some(sub) if !sub.is_empty() => Some(sub.to_string()),
        None if after.is_empty() => None,
        _ => return Err(refuse("invalidPath", rest)),
    };
    Ok(Path {
        extension,
        attribute: Some(attribute.to_string()),
        filter,
        sub,
    })
}

/// `value eq "x"` (the one operator the relay sends); the operand is a JSON literal.
fn parse_filter(filter: &str) -> Result<(String, Value), Refusal> {
    let mut parts = filter.trim().splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(attribute), Some(op), Some(operand)) if op.eq_ignore_ascii_case("eq") => {
            let operand = serde_json::from_str(operand.trim())
                .map_err(|_| refuse("invalidFilter", filter.to_string()))?;
            Ok((attribute.to_string(), operand))
        }
        _ => Err(refuse("invalidFilter", filter.to_string())),
    }
}

/// The key `name` is stored under (attribute names are case-insensitive), or `name` itself.
fn key_in(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// The object holding the path's attribute, made (and the extension declared) when `create`.
fn container<'a>(
    resource: &'a mut Value,
    extension: Option<&str>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let Some(urn) = extension else {
        return resource.as_object_mut();
    };
    let root = resource.as_object_mut()?;
    if !root.contains_key(urn) {
        if !create {
            return None;
        }
        root.insert(urn.to_string(), Value::Object(Map::new()));
        if let Some(Value::Array(schemas)) = root.get_mut("schemas") {
            if !schemas.iter().any(|s| s.as_str() == Some(urn)) {
                schemas.push(Value::String(urn.to_string()));
            }
        }
    }
    root.get_mut(urn)?.as_object_mut()
}

fn apply_one(resource: &mut Value, op: &PatchOp) -> Result<(), Refusal> {
    let path = parse(&op.path, resource)?;
    let read_only = |a: &str| a.eq_ignore_ascii_case("id") || a.eq_ignore_ascii_case("meta");
    if path.extension.is_none() && path.attribute.as_deref().is_some_and(read_only) {
        return Err(refuse("mutability", format!("{} is read-only", op.path)));
    }
    let value = match (op.op, &op.value) {
        (PatchKind::Remove, _) => None,
        (_, Some(value)) => Some(value),
        (_, None) => return Err(refuse("invalidValue", "add and replace need a value")),
    };
    let Some(attribute) = path.attribute.as_deref() else {
        return whole(resource, path.extension.as_deref(), op.op, value);
    };
    let Some(holder) = container(resource, path.extension.as_deref(), value.is_some()) else {
        return Ok(()); // Removing from an extension the resource does not have.
    };
    let key = key_in(holder, attribute);
    match (&path.filter, path.sub.as_deref(), value) {
        (Some(filter), sub, value) => on_matches(holder, &key, filter, sub, value),
        (None, Some(sub), Some(value)) => {
            let parent = holder
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(parent) = parent else {
                return Err(refuse("invalidPath", format!("{attribute} is not complex")));
            };
            parent.insert(key_in(parent, sub), value.clone());
            Ok(())
        }
        (None, Some(sub), None) => {
            if let Some(Value::Object(parent)) = holder.get_mut(&key) {
                parent.remove(&key_in(parent, sub));
                if parent.is_empty() {
                    holder.remove(&key);
                }
            }
            Ok(())
        }
        (None, None, Some(value)) => {
            write(holder, &key, value, op.op == PatchKind::Add);
            Ok(())
        }
        (None, None, None) => {
            match (holder.get_mut(&key), &op.value) {
                // `remove` with a value (as some IdPs send it): those entries leave.
                (Some(Value::Array(entries)), Some(gone)) => {
                    let gone = gone
                        .as_array()
                        .cloned()
                        .unwrap_or_else(|| vec![gone.clone()]);
                    entries.retain(|e| !gone.iter().any(|g| same_value(e, g)));
                    if entries.is_empty() {
                        holder.remove(&key);
                    }
                }
                _ => {
                    holder.remove(&key);
                }
            }
            Ok(())
        }
    }
}

/// An operation on the whole resource (no path) or a whole extension (its URN as the path):
/// `add` and `replace` apply each attribute of the value; `remove` drops the extension.
fn whole(
    resource: &mut Value,
    extension: Option<&str>,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), Refusal> {
    let Some(value) = value else {
        let (Some(urn), Some(root)) = (extension, resource.as_object_mut()) else {
            return Err(refuse("noTarget", "remove needs a path"));
        };
        root.remove(urn);
        if let Some(Value::Array(schemas)) = root.get_mut("schemas") {
            schemas.retain(|s| s.as_str() != Some(urn));
        }
        return Ok(());
    };
    let Value::Object(attributes) = value else {
        return Err(refuse(
            "invalidValue",
            "a path-less operation needs an object value",
        ));
    };
    let read_only = |a: &String| a.eq_ignore_ascii_case("id") || a.eq_ignore_ascii_case("meta");
    if extension.is_none() && attributes.keys().any(read_only) {
        return Err(refuse("mutability", "id and meta are read-only"));
    }
    let holder = container(resource, extension, true)
        .ok_or_else(|| refuse("invalidValue", "the resource is not an object"))?;
    for (name, v) in attributes {
        write(holder, name, v, kind == PatchKind::Add);
    }
    Ok(())
}

/// `add` appends to a multi-valued attribute (skipping values it holds) and merges into a
/// complex one; `replace` swaps a multi-valued one whole and merges into a complex one.
fn write(holder: &mut Map<String, Value>, name: &str, value: &Value, add: bool) {
    let key = key_in(holder, name);
    match (holder.get_mut(&key), value) {
        (Some(Value::Array(present)), new) if add => {
            let new = match new {
                Value::Array(values) => values.clone(),
                single => vec![single.clone()],
            };
            for v in new {
                if !present.iter().any(|p| same_value(p, &v)) {
                    present.push(v);
                }
            }
        }
        (Some(Value::Object(present)), Value::Object(new)) => {
            for (k, v) in new {
                let sub = key_in(present, k);
                present.insert(sub, v.clone());
            }
        }
        _ => {
            holder.insert(key, value.clone());
        }
    }
}

/// Two entries of a multi-valued attribute are the same when equal, or when both carry the
/// same `value` (a member listed again with its `display` is still that member).
fn same_value(a: &Value, b: &Value) -> bool {
    a == b || matches!((a.get("value"), b.get("value")), (Some(x), Some(y)) if x == y)
}

/// `attr[f eq v]` and `attr[f eq v].sub`: the operation on each matching entry; no match is
/// `noTarget` (RFC 7644 §3.5.2.2, §3.5.2.3).
fn on_matches(
    holder: &mut Map<String, Value>,
    key: &str,
    (field, operand): &(String, Value),
    sub: Option<&str>,
    value: Option<&Value>,
) -> Result<(), Refusal> {
    let no_target = || refuse("noTarget", format!("no {key} entry matches"));
    let Some(Value::Array(entries)) = holder.get_mut(key) else {
        return Err(no_target());
    };
    let matches = |entry: &Value| {
        entry
            .as_object()
            .and_then(|o| o.get(&key_in(o, field)))
            .is_some_and(|v| v == operand)
    };
    if !entries.iter().any(matches) {
        return Err(no_target());
    }
    match (sub, value) {
        (None, None) => {
            entries.retain(|e| !matches(e));
            if entries.is_empty() {
                holder.remove(key);
            }
        }
        (None, Some(v)) => {
            for entry in entries.iter_mut().filter(|e| matches(e)) {
                *entry = v.clone();
            }
        }
        (Some(sub), v) => {
            for entry in entries.iter_mut().filter(|e| matches(e)) {
                if let Value::Object(o) = entry {
                    let sub_key = key_in(o, sub);
                    match v {
                        Some(v) => o.insert(sub_key, v.clone()),
                        None => o.remove(&sub_key),
                    };
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn jane() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "id": "u1",
            "userName": "jane@example.com",
            "active": true,
            "title": "Engineer",
            "name": {"formatted": "Jane Doe", "givenName": "Jane"},
            "emails": [{"value": "jane@example.com", "type": "work", "primary": true}]
        })
    }

    fn patched(ops: &[PatchOp]) -> Value {
        let mut user = jane();
        assert_eq!(apply(&mut user, ops), Ok(()));
        user
    }

    #[test]
    fn the_planners_operations_land_where_a_reader_looks() {
        let department = format!("{ENTERPRISE_SCHEMA}:department");
        let user = patched(&[
            PatchOp::replace("active", json!(false)),
            PatchOp::replace("title", json!("CTO")),
            PatchOp::replace("name.formatted", json!("Jane Q. Doe")),
            PatchOp::replace("name.familyName", json!("Doe")),
            PatchOp::replace(
                "emails",
                json!([{"value": "jq@example.com", "type": "work"}]),
            ),
            PatchOp::replace(department.clone(), json!("Ops")),
        ]);
        assert_eq!(user["active"], false);
        assert_eq!(user["title"], "CTO");
        assert_eq!(user["name"]["formatted"], "Jane Q. Doe");
        assert_eq!(user["name"]["givenName"], "Jane", "siblings kept");
        assert_eq!(user["name"]["familyName"], "Doe");
        assert_eq!(
            user["emails"],
            json!([{"value": "jq@example.com", "type": "work"}])
        );
        assert_eq!(user[ENTERPRISE_SCHEMA]["department"], "Ops");
        assert_eq!(user["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        let user = patched(&[
            PatchOp::remove("title"),
            PatchOp::remove("name.givenName"),
            PatchOp::remove("name.formatted"),
            PatchOp::remove("nickName"),
            PatchOp::remove(department),
        ]);
        assert!(user.get("title").is_none());
        assert!(
            user.get("name").is_none(),
            "an emptied complex attribute goes"
        );
    }

    #[test]
    fn value_filters_and_path_less_operations() {
        let user = patched(&[
            PatchOp::replace("emails[type eq \"work\"].value", json!("new@example.com")),
            PatchOp::add(
                "emails",
                json!([{"value": "home@example.com", "type": "home"}]),
            ),
            PatchOp::add("", json!({"nickName": "JD", "name": {"familyName": "Doe"}})),
        ]);
        assert_eq!(user["emails"][0]["value"], "new@example.com");
        assert_eq!(user["emails"][1]["type"], "home");
        assert_eq!(user["nickName"], "JD");
        assert_eq!(user["name"]["givenName"], "Jane");
        let user = patched(&[PatchOp::remove("emails[type eq \"work\"]")]);
        assert!(user.get("emails").is_none());
        let mut user = jane();
        let refused = apply(
            &mut user,
            &[
                PatchOp::replace("title", json!("changed")),
                PatchOp::remove("emails[type eq \"home\"]"),
            ],
        );
        assert_eq!(refused.map_err(|r| r.scim_type), Err("noTarget"));
        assert_eq!(user, jane(), "all or nothing");
    }

    #[test]
    fn members_are_added_once_and_ids_are_read_only() {
        let mut group = json!({"id": "g1", "displayName": "Eng", "members": []});
        let add = PatchOp::add("members", json!([{"value": "u1"}]));
        assert_eq!(apply(&mut group, &[add.clone(), add]), Ok(()));
        assert_eq!(group["members"], json!([{"value": "u1"}]));
        let refused = apply(&mut group, &[PatchOp::replace("id", json!("g2"))]);
        assert_eq!(refused.map_err(|r| r.scim_type), Err("mutability"));
        let missing = PatchOp {
            op: PatchKind::Replace,
            path: "title".into(),
            value: None,
        };
        assert_eq!(
            apply(&mut group, &[missing]).map_err(|r| r.scim_type),
            Err("invalidValue")
        );
    }
}
