//! Credentials security teams accept, on every backend: an Okta service app signing in with
//! `private_key_jwt` instead of an admin's SSWS token, and an Entra app with a certificate
//! instead of a client secret. The access token is fetched once and reused; a service app Okta
//! refuses pauses the work and loses nothing.

use std::time::Duration;

use scim_relay_core::secret::Secret;
use scim_relay_tests::deployment::{Backend, Deployment, CLIENT_STATE, OKTA_SECRET};
use scim_relay_tests::idp::{OKTA_CLIENT_ID, TEST_CLIENT_CERT, TEST_CLIENT_KEY};
use scim_relay_tests::payloads::{graph_notification, okta_delivery};

/// Okta read by the fixture's service app, signing in with its key (no SSWS token).
fn service_app(s: &mut scim_relay_core::config::Settings) {
    s.okta.api_token = Secret::default();
    s.okta.client_id = Some(OKTA_CLIENT_ID.into());
    s.okta.private_key = Secret::new(TEST_CLIENT_KEY);
    s.okta.key_id = Some("relay-key-1".into());
}

/// A new Okta user, announced by Okta's create event: provisioned, its directory read with
/// whatever credential the deployment has.
async fn created_by_okta(d: &Deployment, id: &str, email: &str) {
    d.idp
        .set_okta_user(id, "ACTIVE", Some(email), "Ser", "Vice", None);
    d.okta(okta_delivery(
        &format!("create-{id}"),
        "user.lifecycle.create",
        id,
        email,
    ))
    .await;
    assert_eq!(
        d.target.user(email).await.expect("provisioned")["active"],
        true
    );
}

pub async fn a_service_app_and_a_certificate_read_the_directories_without_shared_secrets(
    b: Backend,
) {
    let mut d = Deployment::options(b)
        .patient()
        .start(|s| {
            service_app(s);
            s.entra.client_secret = Secret::default();
            s.entra.client_private_key = Secret::new(TEST_CLIENT_KEY);
            s.entra.client_certificate = Secret::new(TEST_CLIENT_CERT);
        })
        .await;
    for n in 1..=3 {
        created_by_okta(&d, &format!("00uSVC{n}"), &format!("svc{n}@example.com")).await;
    }
    assert_eq!(
        d.idp.okta_token_requests(),
        1,
        "one access token, reused until it nears expiry"
    );
    d.idp
        .set_graph_user("e-cert", "Cert.User@contoso.com", true, "Cert User", None);
    d.entra(graph_notification("e-cert", CLIENT_STATE, 1)).await;
    assert_eq!(
        d.target
            .user("cert.user@contoso.com")
            .await
            .expect("read with the certificate credential")["active"],
        true
    );

    // The app is not the one Okta knows: the workers pause, the trigger waits.
    d.restart(|s| s.okta.client_id = Some("0oaNOTTHEAPP".into()))
        .await;
    d.idp.set_okta_user(
        "00uSVC9",
        "ACTIVE",
        Some("svc9@example.com"),
        "Ser",
        "Vice",
        None,
    );
    let (status, _) = d
        .post_okta(
            &okta_delivery(
                "svc-9",
                "user.lifecycle.create",
                "00uSVC9",
                "svc9@example.com",
            ),
            OKTA_SECRET,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!d.drain(Duration::from_millis(1500)).await);
    assert!(d.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert_eq!(d.depth().await.0, 1, "the trigger waits");
    assert!(d.target.user("svc9@example.com").await.is_none());
    d.finish().await;
}

/// An Okta service app that requires DPoP (Okta's default for new ones) works with no setting
/// of its own: the relay notices it from the token endpoint's refusal, binds the token to a key
/// it made at start-up (answering the nonce Okta asks for), and proves that key on every API
/// call, each proof naming the call and carrying the API's nonce once asked. A token taken
/// from the relay is worth nothing without that key.
pub async fn a_service_app_that_requires_dpop_binds_its_token_to_a_key_of_the_relay(b: Backend) {
    let d = Deployment::options(b)
        .patient()
        .start(|s| {
            service_app(s);
        })
        .await;
    d.idp.okta_require_dpop();
    for n in 1..=2 {
        created_by_okta(&d, &format!("00uDPOP{n}"), &format!("dpop{n}@example.com")).await;
    }
    assert!(d.dead_letters().await.is_empty());
    // Without a proof, with one lacking the nonce, then bound: three requests, one token.
    assert_eq!(d.idp.okta_token_requests(), 3);
    assert!(
        d.idp.okta_dpop_proofs() >= 2,
        "every read carried a proof Okta accepted: {}",
        d.idp.okta_dpop_proofs()
    );

    // The token alone, as someone who copied it would send it: refused.
    let stolen = reqwest::Client::new()
        .get(format!("{}/api/v1/users/00uDPOP1", d.idp.url))
        .header(
            "Authorization",
            format!(
                "DPoP {}",
                scim_relay_tests::okta_dpop::OKTA_DPOP_ACCESS_TOKEN
            ),
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(stolen.status().as_u16(), 401);
    d.finish().await;
}
