//! The Graph validation handshake: any query string and body. Nothing panics, a handshake
//! queues nothing, and its answer is plain text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_relay_fuzz::{handle, request};

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let query = String::from_utf8_lossy(&data[..cut]).into_owned();
    let body = data.get(cut + 1..).unwrap_or_default().to_vec();
    let handshake = query.contains("validationToken=");
    let (response, queued) = handle(request("POST", "/entra", Some(query), Vec::new(), body));
    if handshake && response.status == 200 {
        assert!(queued.is_empty(), "a handshake queues nothing");
        assert!(response.content_type.starts_with("text/plain"));
    }
});
