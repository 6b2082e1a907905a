//! Okta deliveries: any body, with the right secret or any other. Nothing panics; without the
//! secret nothing is queued; what is queued is a signed envelope about a user.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_relay_core::envelope::Subject;
use scim_relay_fuzz::{handle, request, signer, OKTA_SECRET};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Odd first byte: the secret header is fuzzed too (up to the first newline).
    let (secret, body) = if mode % 2 == 1 {
        let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        (
            String::from_utf8_lossy(&rest[..cut]).into_owned(),
            rest.get(cut + 1..).unwrap_or_default().to_vec(),
        )
    } else {
        (OKTA_SECRET.to_string(), rest.to_vec())
    };
    let method = if mode & 2 == 0 { "POST" } else { "GET" };
    let (response, queued) = handle(request(
        method,
        "/okta",
        None,
        vec![
            ("authorization".into(), secret.clone()),
            ("x-okta-verification-challenge".into(), "challenge".into()),
        ],
        body,
    ));
    if secret != OKTA_SECRET {
        assert!(queued.is_empty(), "queued without the secret");
        assert_eq!(response.status, 401);
    }
    for message in queued {
        let trigger = signer()
            .open(&message.body)
            .expect("queued envelopes verify");
        assert!(matches!(trigger.subject, Subject::User { .. }));
    }
});
