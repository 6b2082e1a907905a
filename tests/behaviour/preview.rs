//! `scim-relay plan` and `scim-relay sync`, run as an operator runs them, on every backend: the
//! preview says what converging would do to each user and writes nothing; a sync applies one
//! user through the worker and says what it did.

use scim_relay_core::envelope::Source;
use scim_relay_tests::deployment::{okta_tenant, Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;
use serde_json::Value;

/// What the relay and the target hold that a preview must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    target_writes: usize,
    records: Vec<Option<String>>,
    known_names: Vec<String>,
    depth: (u64, u64),
}

const USERS: [&str; 8] = [
    "00uKEPT",
    "00uGONE",
    "00uRETITLED",
    "00uADOPT",
    "00uNEW",
    "00uVENDOR",
    "00uTWIN1",
    "00uTWIN2",
];

async fn snapshot(d: &Deployment) -> Snapshot {
    let tenant = okta_tenant(&d.idp);
    let mut records = Vec::new();
    for id in USERS {
        records.push(
            d.recorded(Source::Okta, &tenant, id)
                .await
                .map(|r| format!("{r:?}")),
        );
    }
    let mut known_names: Vec<String> = d
        .store()
        .known_user_names()
        .await
        .expect("names")
        .into_iter()
        .collect();
    known_names.sort();
    Snapshot {
        target_writes: ["POST", "PATCH", "PUT", "DELETE"]
            .iter()
            .map(|m| d.target.count(m))
            .sum(),
        records,
        known_names,
        depth: d.depth().await,
    }
}

/// The plan's text line for `user_name` (the table's USER column).
fn line_of<'a>(text: &'a str, user_name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(user_name))
        .collect()
}

fn json_line<'a>(plan: &'a Value, user_name: &str) -> Vec<&'a Value> {
    plan["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter(|u| u["user_name"] == user_name)
        .collect()
}

pub async fn plan_previews_every_user_and_writes_nothing_then_sync_applies_one(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        // Okta only: the plan lists each configured directory.
        s.entra.client_id = None;
        s.target.protected_users = vec!["vendor@example.com".into()];
    })
    .await;
    let okta = |id: &str, status: &str, email: &str, title: Option<&str>| {
        d.idp
            .set_okta_user(id, status, Some(email), "First", id, title)
    };
    // Provisioned by the relay: one unchanged, one deprovisioned since and one retitled since,
    // the changes' events lost.
    for (n, (id, email)) in [
        ("00uKEPT", "kept@example.com"),
        ("00uGONE", "gone@example.com"),
        ("00uRETITLED", "retitled@example.com"),
    ]
    .into_iter()
    .enumerate()
    {
        okta(id, "ACTIVE", email, Some("Engineer"));
        d.okta(okta_delivery(
            &format!("pv-{n}"),
            "user.lifecycle.create",
            id,
            email,
        ))
        .await;
    }
    assert_eq!(d.target.count("POST"), 3, "{:?}", d.target.calls());
    okta(
        "00uGONE",
        "DEPROVISIONED",
        "gone@example.com",
        Some("Engineer"),
    );
    okta(
        "00uRETITLED",
        "ACTIVE",
        "retitled@example.com",
        Some("Principal Wizard"),
    );
    // New in the directory: one with an account made by hand before the relay, one without,
    // one whose address is a protected account, two sharing one address.
    okta("00uADOPT", "ACTIVE", "adopt@example.com", Some("Analyst"));
    okta("00uNEW", "ACTIVE", "new@example.com", Some("Designer"));
    okta(
        "00uVENDOR",
        "ACTIVE",
        "vendor@example.com",
        Some("Contractor"),
    );
    okta("00uTWIN1", "ACTIVE", "twin@example.com", None);
    okta("00uTWIN2", "ACTIVE", "twin@example.com", None);
    let adopt_id = d.target.create_user_by_hand("adopt@example.com").await;
    let vendor_id = d.target.create_user_by_hand("vendor@example.com").await;
    let manual_id = d.target.create_user_by_hand("manual@example.com").await;
    let before = snapshot(&d).await;

    let text = d.command(&["plan"]).await.expect("plan runs");
    let json = d
        .command(&["plan", "--output", "json"])
        .await
        .expect("plan runs");
    let one = d
        .command(&["plan", "--user", "00uRETITLED"])
        .await
        .expect("plan --user runs");
    let by_name = d
        .command(&["plan", "--user", "adopt@example.com", "--output", "json"])
        .await
        .expect("plan --user by name runs");

    assert_eq!(snapshot(&d).await, before, "plan wrote something");

    // The text report: counts, then one line per user.
    let count = |action: &str| {
        text.lines()
            .find(|l| {
                l.split_whitespace().next() == Some(action) && l.split_whitespace().count() == 2
            })
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<usize>().ok())
    };
    for (action, n) in [
        ("adopt", 1),
        ("create", 1),
        ("update", 1),
        ("deactivate", 1),
        ("delete", 0),
        ("conflict", 2),
        ("protected", 1),
        ("error", 0),
        ("leave-alone", 2),
    ] {
        assert_eq!(count(action), Some(n), "{action} in:\n{text}");
    }
    let only = |user_name: &str| -> String {
        let lines = line_of(&text, user_name);
        assert_eq!(lines.len(), 1, "{user_name} in:\n{text}");
        lines[0].to_string()
    };
    let kept = only("kept@example.com");
    assert!(
        kept.starts_with("leave-alone") && kept.contains("00uKEPT"),
        "{kept}"
    );
    let gone = only("gone@example.com");
    assert!(
        gone.starts_with("deactivate") && gone.contains("active"),
        "{gone}"
    );
    let retitled = only("retitled@example.com");
    assert!(
        retitled.starts_with("update") && retitled.contains(" title "),
        "{retitled}"
    );
    let adopt = only("adopt@example.com");
    assert!(
        adopt.starts_with("adopt") && adopt.contains(&adopt_id) && adopt.contains("title"),
        "{adopt}"
    );
    let new = only("new@example.com");
    assert!(new.starts_with("create") && new.contains("00uNEW"), "{new}");
    let vendor = only("vendor@example.com");
    assert!(
        vendor.starts_with("protected") && vendor.contains("protected_users"),
        "{vendor}"
    );
    let twins = line_of(&text, "twin@example.com");
    assert_eq!(twins.len(), 2, "{text}");
    assert!(
        twins
            .iter()
            .all(|l| l.starts_with("conflict") && l.contains("00uTWIN1") && l.contains("00uTWIN2")),
        "{twins:?}"
    );
    let manual = only("manual@example.com");
    assert!(
        manual.starts_with("leave-alone")
            && manual.contains(&manual_id)
            && manual.contains("not the relay's"),
        "{manual}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    // Attribute names, never values.
    for value in ["Principal Wizard", "Analyst", "Designer", "Contractor"] {
        assert!(
            !text.contains(value) && !json.contains(value) && !one.contains(value),
            "{value} shown"
        );
    }

    // The same plan for scripts.
    let plan: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(plan["counts"]["adopt"], 1);
    assert_eq!(plan["counts"]["conflict"], 2);
    assert_eq!(plan["counts"]["leave-alone"], 2);
    let retitled = json_line(&plan, "retitled@example.com");
    assert_eq!(retitled.len(), 1);
    assert_eq!(retitled[0]["action"], "update");
    assert_eq!(retitled[0]["attributes"], serde_json::json!(["title"]));
    assert_eq!(retitled[0]["user_id"], "00uRETITLED");
    let vendor = json_line(&plan, "vendor@example.com");
    assert_eq!(vendor[0]["action"], "protected");
    let manual = json_line(&plan, "manual@example.com");
    assert_eq!(manual[0]["action"], "leave-alone");
    assert_eq!(manual[0]["scim_id"], manual_id.as_str());
    assert!(manual[0].get("user_id").is_none());
    assert_ne!(vendor_id, manual_id);

    // One user, step by step: what was read, what was recorded, the plan.
    assert!(
        one.starts_with("retitled@example.com (okta 00uRETITLED): update"),
        "{one}"
    );
    for step in ["directory", "recorded", "plan", "changes", "outcome"] {
        assert!(
            one.lines().any(|l| l.trim_start().starts_with(step)),
            "{step} missing:\n{one}"
        );
    }
    assert!(one.contains("PATCH /Users/"), "{one}");
    let by_name: Value = serde_json::from_str(&by_name).expect("json");
    let adopt = json_line(&by_name, "adopt@example.com");
    assert_eq!(adopt.len(), 1, "{by_name}");
    assert_eq!(adopt[0]["action"], "adopt");
    assert!(
        adopt[0]["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["step"] == "target")),
        "{by_name}"
    );

    // Apply one user now.
    let synced = d
        .command(&["sync", "--user", "00uRETITLED"])
        .await
        .expect("sync runs");
    assert!(synced.contains("plan:    update [title]"), "{synced}");
    assert!(
        synced.contains("PATCH /Users/") && synced.contains("(title) -> ok"),
        "{synced}"
    );
    assert!(
        synced.contains("outcome: applied (1 SCIM calls)"),
        "{synced}"
    );
    assert!(!synced.contains("Principal Wizard"), "{synced}");
    // It is finished like any trigger: its history entry, printed and kept.
    let entry = synced
        .lines()
        .find(|l| l.starts_with("history: "))
        .unwrap_or_else(|| panic!("no history entry in {synced}"));
    assert!(
        entry.contains("applied")
            && entry.contains("scim-relay.sync")
            && entry.contains("plan=update calls=1 changed=title"),
        "{entry}"
    );
    let history = d
        .command(&["history", "00uRETITLED"])
        .await
        .expect("history");
    assert!(
        history.contains(entry.trim_start_matches("history: ")),
        "{history}"
    );
    let account = d
        .target
        .user("retitled@example.com")
        .await
        .expect("account");
    assert_eq!(account["title"], "Principal Wizard", "{account}");
    assert_eq!(snapshot(&d).await.target_writes, before.target_writes + 1);
    // Nothing left to do for that user; the rest unchanged.
    let after = d.command(&["plan"]).await.expect("plan runs");
    let retitled = line_of(&after, "retitled@example.com");
    assert!(
        retitled.len() == 1 && retitled[0].starts_with("leave-alone"),
        "{after}"
    );
    assert_eq!(
        line_of(&after, "new@example.com")[0]
            .split_whitespace()
            .next(),
        Some("create")
    );
    // A sync by userName goes through the same path: the new user is created.
    let created = d
        .command(&["sync", "--user", "new@example.com"])
        .await
        .expect("sync runs");
    assert!(created.contains("plan:    create"), "{created}");
    assert!(created.contains("POST /Users"), "{created}");
    assert!(created.contains("outcome: applied"), "{created}");
    assert!(d.target.user("new@example.com").await.is_some());
    // A protected account is left alone by the worker, as the plan said.
    let refused = d.command(&["sync", "--user", "00uVENDOR"]).await;
    assert!(refused.is_ok(), "{refused:?}");
    assert!(
        refused
            .as_deref()
            .is_ok_and(|r| r.contains("outcome: unchanged")),
        "{refused:?}"
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}
