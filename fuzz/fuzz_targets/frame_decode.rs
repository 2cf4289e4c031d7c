//! The WebSocket frame decoder on untrusted text: it must never panic, a decoded frame
//! must encode and decode to itself, and a `req_id` it reports must be a valid id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sluice_protocol::decode(text) {
        Ok(frame) => {
            let again = sluice_protocol::decode(&sluice_protocol::encode(&frame))
                .expect("an encoded frame decodes");
            assert_eq!(again, frame, "encode ∘ decode is the identity");
        }
        Err(e) => {
            if let Some(id) = e.req_id {
                assert!(sluice_protocol::valid_id(&id));
            }
        }
    }
});
