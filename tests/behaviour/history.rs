//! Per-user history and `scim-relay history`, on every backend.

use scim_relay_tests::deployment::{Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;
use serde_json::Value;

const EMAIL: &str = "Hana.Ito@Example.com";

fn hana(d: &Deployment, status: &str, title: &str) {
    d.idp
        .set_okta_user("00uHANA", status, Some(EMAIL), "Hana", "Ito", Some(title));
}

pub async fn a_users_history_tells_each_finished_trigger_by_id_or_email_without_values(b: Backend) {
    let d = Deployment::start(b).await;
    hana(&d, "ACTIVE", "Engineer");
    let create = okta_delivery("ev-h-create", "user.lifecycle.create", "00uHANA", EMAIL);
    d.okta(create.clone()).await;
    hana(&d, "ACTIVE", "Principal Secret Title");
    d.okta(okta_delivery(
        "ev-h-update",
        "user.account.update_profile",
        "00uHANA",
        EMAIL,
    ))
    .await;
    // Okta delivering the create again: finished as a duplicate.
    d.okta(create).await;
    // Someone else's trigger, dead-lettered: in their history, not in Hana's.
    d.idp
        .set_okta_user("00uNOMAIL", "ACTIVE", None, "No", "Mail", None);
    d.okta(okta_delivery(
        "ev-h-nomail",
        "user.lifecycle.create",
        "00uNOMAIL",
        "nomail",
    ))
    .await;
    let account = d
        .target
        .user("hana.ito@example.com")
        .await
        .expect("created");
    let scim_id = account["id"].as_str().expect("SCIM id").to_string();

    // By email, in any case: found through the keyed fingerprint.
    let text = d
        .command(&["history", "HANA.ITO@example.com"])
        .await
        .expect("history by email");
    assert!(text.contains("okta user 00uHANA"), "{text}");
    assert!(text.contains(&scim_id), "the account id: {text}");
    assert!(text.contains("(active;"), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("ev-h-")).collect();
    assert_eq!(
        lines.len(),
        3,
        "three finished triggers, newest first: {text}"
    );
    assert!(
        lines[0].contains("duplicate") && lines[0].contains("ev-h-create"),
        "{text}"
    );
    assert!(
        lines[1].contains("applied")
            && lines[1].contains("plan=update")
            && lines[1].contains("changed=title"),
        "{text}"
    );
    assert!(
        lines[2].contains("plan=create calls=2"),
        "look-up and create: {text}"
    );
    assert!(
        !text.contains("ev-h-nomail"),
        "another user's trigger: {text}"
    );
    for secret in ["hana.ito", "Principal Secret Title", "Engineer"] {
        assert!(
            !text.to_lowercase().contains(&secret.to_lowercase()),
            "{secret} printed: {text}"
        );
    }

    // By IdP id, as JSON.
    let json: Value = serde_json::from_str(
        &d.command(&["history", "00uHANA", "--output", "json"])
            .await
            .expect("history by id"),
    )
    .expect("JSON");
    let users = json["users"].as_array().expect("users");
    assert_eq!(users.len(), 1, "{json}");
    let user = &users[0];
    assert_eq!(user["user_id"], "00uHANA");
    assert_eq!(user["state"]["scim_id"], scim_id.as_str());
    assert_eq!(user["state"]["active"], true);
    let entries = user["entries"].as_array().expect("entries");
    let outcomes: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["duplicate", "applied", "applied"], "{json}");
    assert_eq!(entries[1]["changed"], serde_json::json!(["title"]));
    assert_eq!(entries[2]["event_type"], "user.lifecycle.create");
    for applied in &entries[1..] {
        assert!(applied["latency_ms"].as_i64().is_some(), "{applied}");
        assert!(applied["scim_calls"].as_u64() >= Some(1), "{applied}");
    }

    // The dead letter's reason is in its user's history.
    let nomail = d
        .command(&["history", "00uNOMAIL"])
        .await
        .expect("history of the dead-lettered user");
    assert!(nomail.contains("dead-lettered"), "{nomail}");
    assert!(nomail.contains("no email address"), "the reason: {nomail}");
    assert!(
        nomail.contains("record:     none"),
        "never provisioned: {nomail}"
    );

    let unknown = d.command(&["history", "nobody@example.com"]).await;
    assert!(
        unknown
            .as_ref()
            .is_err_and(|e| e.contains("no record or history")),
        "{unknown:?}"
    );
    d.finish().await;
}
