//! Graph notification collections: any body. Nothing panics; an item only reaches the queue
//! with the configured clientState.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_relay_fuzz::{handle, request, signer, CLIENT_STATE};

fuzz_target!(|data: &[u8]| {
    let (response, queued) = handle(request(
        "POST",
        "/entra",
        None,
        vec![("content-type".into(), "application/json".into())],
        data.to_vec(),
    ));
    if !queued.is_empty() {
        // Whatever was queued came from an item carrying the clientState.
        let text = String::from_utf8_lossy(data);
        assert!(
            text.contains(CLIENT_STATE),
            "queued without the clientState"
        );
        assert_eq!(response.status, 202);
    }
    for message in queued {
        signer()
            .open(&message.body)
            .expect("queued envelopes verify");
    }
});
