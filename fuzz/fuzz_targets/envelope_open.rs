//! Queue message bodies: any text. Opening never panics, and what opens is exactly what the
//! signer seals (a forged or altered envelope does not open).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_relay_fuzz::signer;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(trigger) = signer().open(body) {
        let resealed = signer().seal(&trigger);
        assert_eq!(signer().open(&resealed.body).ok(), Some(trigger));
    }
});
