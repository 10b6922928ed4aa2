//! Change chunks from a roster city (signed, so they reach Automerge) through the chunk check,
//! the decoder and the whole acceptance pipeline: an error or a verdict, never a panic that
//! escapes, and a stored document that loads.
//!
//! Automerge panics on some inputs, by design caught (`doc::isolate`: the entry is
//! quarantined). libFuzzer's panic hook aborts on every panic, caught or not, so this target
//! replaces it with a quiet one: a panic that escapes the pipeline still ends the run, as
//! libfuzzer-sys reports any panic that reaches it.
#![no_main]

use intercity_protocol::entry::{DocId, Hash32, Scope, sign_entry};
use intercity_protocol::identity::CityKey;
use intercity_protocol::ingest::memory::MemLedger;
use intercity_protocol::ingest::{Ledger, MAX_CHANGE_OPS, decode_change};
use intercity_protocol::{chunk, doc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let key = CityKey::from_secret([7; 32]);
    let _ = chunk::check_change(data, MAX_CHANGE_OPS as u64);
    let id = match decode_change(&key.id(), data) {
        Ok(c) if c.deps().is_empty() => DocId::for_genesis(&c.hash()),
        _ => DocId([5; 16]),
    };
    let entry = sign_entry(&key, Scope::Federation, 1, Hash32::default(), id, data, 0);
    let mut ledger = MemLedger::default();
    if ledger.ingest(&entry.encode(), data).is_ok() {
        // Whatever was accepted reads back.
        if let Ok(Some(d)) = ledger.doc(&id) {
            let _ = doc::read_record(&d, None);
        }
    }
});
