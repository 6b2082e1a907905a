//! The relay only ever touches accounts it owns, on every backend: a look-up's answer is acted
//! on only when its userName is the one asked for.

use scim_relay_tests::deployment::{Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;

pub async fn a_target_that_ignores_the_filter_never_gets_someone_elses_account_touched(b: Backend) {
    let d = Deployment::start(b).await;
    // The only account on the target, someone else's; the target answers every look-up
    // with it.
    d.target
        .create_user_by_hand("someone.else@example.com")
        .await;
    d.target.ignore_filters(true);

    // A deactivated user the relay never provisioned: the "deactivate an unrecorded account"
    // look-up must not deactivate the account it is answered with.
    d.idp.set_okta_user(
        "00uGONE",
        "DEPROVISIONED",
        Some("gone@example.com"),
        "Go",
        "Ne",
        None,
    );
    d.okta(okta_delivery(
        "ev-gone",
        "user.lifecycle.deactivate",
        "00uGONE",
        "gone@example.com",
    ))
    .await;
    assert_eq!(d.target.count("PATCH"), 0, "{:?}", d.target.calls());

    // A new user: not adopted from someone else's account, but created.
    d.idp.set_okta_user(
        "00uNEW",
        "ACTIVE",
        Some("new.hire@example.com"),
        "New",
        "Hire",
        Some("Engineer"),
    );
    d.okta(okta_delivery(
        "ev-new",
        "user.lifecycle.create",
        "00uNEW",
        "new.hire@example.com",
    ))
    .await;
    d.target.ignore_filters(false);
    let other = d
        .target
        .user("someone.else@example.com")
        .await
        .expect("still there");
    assert_eq!(
        other["active"], true,
        "someone else's account was switched off"
    );
    assert!(
        other.get("title").is_none_or(serde_json::Value::is_null),
        "someone else's account was adopted: {other}"
    );
    assert_eq!(d.target.count("PATCH"), 0, "{:?}", d.target.calls());
    let created = d
        .target
        .user("new.hire@example.com")
        .await
        .expect("created");
    assert_eq!(created["title"], "Engineer");
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn protected_accounts_are_never_adopted_changed_or_deactivated(b: Backend) {
    let mut d = Deployment::start(b).await;
    // Provisioned by the relay, later made a break-glass admin.
    let admin = |d: &Deployment, status, email: &str, title: Option<&str>| {
        d.idp
            .set_okta_user("00uADM", status, Some(email), "Ad", "Min", title)
    };
    admin(&d, "ACTIVE", "admin@example.com", None);
    d.okta(okta_delivery(
        "pr-1",
        "user.lifecycle.create",
        "00uADM",
        "admin@example.com",
    ))
    .await;
    assert_eq!(d.target.count("POST"), 1);
    d.restart(|s| {
        s.target.protected_users = vec!["Admin@Example.com".into(), "vendor@example.com".into()];
    })
    .await;
    // A vendor's account, made on the target by hand.
    d.target.create_user_by_hand("vendor@example.com").await;
    let before = d.target.calls().len();

    // A change of attributes: not sent.
    admin(&d, "ACTIVE", "admin@example.com", Some("Break glass"));
    d.okta(okta_delivery(
        "pr-2",
        "user.account.update_profile",
        "00uADM",
        "admin@example.com",
    ))
    .await;
    // Renamed and deactivated in one change: the recorded name still protects it.
    admin(&d, "DEPROVISIONED", "admin.renamed@example.com", None);
    d.okta(okta_delivery(
        "pr-3",
        "user.lifecycle.deactivate",
        "00uADM",
        "admin.renamed@example.com",
    ))
    .await;
    // A directory user with the vendor's address does not adopt its account.
    d.idp.set_okta_user(
        "00uVEN",
        "ACTIVE",
        Some("vendor@example.com"),
        "Ven",
        "Dor",
        Some("Contractor"),
    );
    d.okta(okta_delivery(
        "pr-4",
        "user.lifecycle.create",
        "00uVEN",
        "vendor@example.com",
    ))
    .await;

    let calls = d.target.calls();
    assert_eq!(calls.len(), before, "the relay made no call: {calls:?}");
    let admin = d.target.user("admin@example.com").await.expect("kept");
    assert_eq!(admin["active"], true);
    assert!(admin.get("title").is_none_or(|t| t != "Break glass"));
    let vendor = d.target.user("vendor@example.com").await.expect("kept");
    assert!(vendor.get("title").is_none_or(|t| t != "Contractor"));
    assert_eq!(d.depth().await, (0, 0));
    assert!(d.dead_letters().await.is_empty());
    d.finish().await;
}

pub async fn two_idp_users_with_one_email_never_share_or_switch_off_one_account(b: Backend) {
    let d = Deployment::start(b).await;
    // Okta emails are not unique: B has the account.
    d.idp.set_okta_user(
        "00uJANEBBBBBBBBBBBBB",
        "ACTIVE",
        Some("jane@example.com"),
        "Jane",
        "B",
        None,
    );
    d.okta(okta_delivery(
        "sh-1",
        "user.lifecycle.create",
        "00uJANEBBBBBBBBBBBBB",
        "jane@example.com",
    ))
    .await;
    assert_eq!(d.target.count("POST"), 1);
    let calls = d.target.calls().len();

    // A, deactivated and never provisioned, shares the address: the look-up finds B's account,
    // which A's deactivation must not switch off.
    d.idp.set_okta_user(
        "00uJANEAAAAAAAAAAAAA",
        "DEPROVISIONED",
        Some("jane@example.com"),
        "Jane",
        "A",
        None,
    );
    d.okta(okta_delivery(
        "sh-2",
        "user.lifecycle.deactivate",
        "00uJANEAAAAAAAAAAAAA",
        "jane@example.com",
    ))
    .await;
    // Reactivated, A must not adopt B's account either.
    d.idp.set_okta_user(
        "00uJANEAAAAAAAAAAAAA",
        "ACTIVE",
        Some("jane@example.com"),
        "Jane",
        "A",
        Some("Imposter"),
    );
    d.okta(okta_delivery(
        "sh-3",
        "user.lifecycle.activate",
        "00uJANEAAAAAAAAAAAAA",
        "jane@example.com",
    ))
    .await;

    let account = d
        .target
        .user("jane@example.com")
        .await
        .expect("B's account");
    assert_eq!(account["active"], true, "B's account stays on");
    assert!(account.get("title").is_none_or(|t| t != "Imposter"));
    assert_eq!(
        d.target.count("PATCH"),
        0,
        "nothing written to B's account: {:?}",
        &d.target.calls()[calls..]
    );
    let dead = d.dead_letters().await;
    assert_eq!(dead.len(), 2, "both reported: {dead:?}");
    assert!(
        dead.iter().all(|r| r.contains("ownership conflict")
            && r.contains("00uJANEBBBBBBBBBBBBB")
            && !r.contains("jane@")),
        "{dead:?}"
    );
    d.finish().await;
}

pub async fn without_a_directory_an_event_never_adopts_or_switches_off_an_unrecorded_account(
    b: Backend,
) {
    let d = Deployment::start_with(b, |s| {
        s.okta.api_token = scim_relay_core::secret::Secret::default();
        s.okta.use_event_content = true;
    })
    .await;
    // Accounts made on the target by hand, which the relay has no record of.
    d.target.create_user_by_hand("ceo@example.com").await;
    d.target.create_user_by_hand("cfo@example.com").await;

    // Whoever holds the hook secret says "deactivate the CEO", then "create the CFO" (to take
    // the account over with an event's profile): neither is acted on.
    d.okta(okta_delivery(
        "ec-1",
        "user.lifecycle.deactivate",
        "00uFORGEDCEO00000000",
        "ceo@example.com",
    ))
    .await;
    d.okta(okta_delivery(
        "ec-2",
        "user.lifecycle.create",
        "00uFORGEDCFO00000000",
        "cfo@example.com",
    ))
    .await;
    assert_eq!(d.target.count("PATCH"), 0, "{:?}", d.target.calls());
    assert_eq!(
        d.target.user("ceo@example.com").await.unwrap()["active"],
        true
    );
    assert_eq!(
        d.target.user("cfo@example.com").await.unwrap()["active"],
        true
    );
    let dead = d.dead_letters().await;
    assert_eq!(dead.len(), 1, "the adoption is reported: {dead:?}");
    assert!(dead[0].contains("not adopted"), "{dead:?}");

    // What the relay made itself it still manages from events.
    d.okta(okta_delivery(
        "ec-3",
        "user.lifecycle.create",
        "00uNEWHIRE0000000000",
        "new.hire@example.com",
    ))
    .await;
    d.okta(okta_delivery(
        "ec-4",
        "user.lifecycle.deactivate",
        "00uNEWHIRE0000000000",
        "new.hire@example.com",
    ))
    .await;
    assert_eq!(
        d.target.user("new.hire@example.com").await.unwrap()["active"],
        false
    );
    d.finish().await;
}

/// Two IdP users sharing one email, worked at the same moment by two workers (a cutover's full
/// pass queues them together, each in its own FIFO group): both find the account made by hand
/// before either writes to it. The claim comes before the write, so exactly one claims and
/// adopts it; the other is refused with `ownership conflict` before it sends anything,
/// whichever wins. Five rounds, each forced to race.
pub async fn two_workers_racing_for_one_account_never_both_act_on_it(b: Backend) {
    use std::sync::Arc;

    use scim_relay_core::clock::SystemClock;
    use scim_relay_core::envelope::{EnvelopeSigner, Source, Trigger};
    use scim_relay_core::scim::ScimTarget;
    use scim_relay_core::state::{StateStore, UserKey};
    use scim_relay_core::wiring;
    use scim_relay_core::worker::{Outcome, WorkError};
    use scim_relay_tests::rendezvous::Rendezvous;

    let d = Deployment::start(b).await;
    let tenant = scim_relay_tests::deployment::okta_tenant(&d.idp);
    let outbound = wiring::outbound(&d.settings).expect("outbound clients");
    let real: Arc<dyn ScimTarget> = match d.target.memory_target() {
        Some(memory) => Arc::new(memory),
        None => outbound.target.clone(),
    };
    let store: Arc<dyn StateStore> = d.store();
    let signer = EnvelopeSigner::from_settings(&d.settings);
    for round in 0..5 {
        let email = format!("shared{round}@example.com");
        let account = d.target.create_user_by_hand(&email).await;
        let users = [
            ("A", format!("00uRACEA{round:012}")),
            ("B", format!("00uRACEB{round:012}")),
        ];
        for (last, id) in &users {
            d.idp
                .set_okta_user(id, "ACTIVE", Some(&email), "Race", last, None);
        }
        let racing = wiring::Outbound {
            target: Arc::new(Rendezvous::new(real.clone(), 2)),
            okta: outbound.okta.clone(),
            entra: outbound.entra.clone(),
        };
        let worker = || {
            wiring::worker(&d.settings, &racing, store.clone(), Arc::new(SystemClock))
                .expect("the deployment's settings are valid")
        };
        let (first, second) = (worker(), worker());
        let key = |id: &str| UserKey {
            source: Source::Okta,
            tenant: tenant.clone(),
            user_id: id.to_string(),
        };
        let body = |id: &str| {
            let trigger = Trigger::for_user(
                &key(id),
                "user.lifecycle.activate",
                format!("race-{round}-{id}"),
                chrono::Utc::now(),
            );
            signer.seal(&trigger).body
        };
        let patches_before = d.target.count("PATCH");
        let (body_a, body_b) = (body(&users[0].1), body(&users[1].1));
        let (a, b) = tokio::join!(first.process(&body_a), second.process(&body_b));
        let (winner, loser) = match (&a, &b) {
            (Ok(Outcome::Applied { .. }), Err(e)) => (&users[0], e),
            (Err(e), Ok(Outcome::Applied { .. })) => (&users[1], e),
            other => panic!("round {round}: exactly one adopts: {other:?}"),
        };
        // The loser refuses either at its own claim (the two collided) or at its look-up, when
        // the winner's claim was already committed: both leave the account alone.
        assert!(
            matches!(loser, WorkError::NotOurs(r)
                if r.contains("ownership conflict") || r.contains("belongs to another IdP user")),
            "round {round}: {loser:?}"
        );
        assert_eq!(
            d.target.count("PATCH") - patches_before,
            1,
            "round {round}: one adoption, none by the loser"
        );
        assert_eq!(
            store.claimant(&account).await.expect("claimant"),
            Some(key(&winner.1)),
            "round {round}"
        );
        let adopted = d.target.user(&email).await.expect("the account");
        assert_eq!(
            adopted["name"]["formatted"],
            format!("Race {}", winner.0),
            "round {round}: the winner's attributes, and only the winner's"
        );
    }
    d.finish().await;
}
