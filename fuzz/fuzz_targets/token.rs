//! Invitation tokens.
#![no_main]

use intercity_protocol::invite::Invitation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Invitation::verified(&text);
    let _ = Invitation::verified(&format!("ic1{text}"));
});
