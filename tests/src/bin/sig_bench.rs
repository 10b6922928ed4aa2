//! What a signature check costs (issue #16): ed25519-dalek's `verify_strict` (the rule up to
//! version 3), the protocol's rule one at a time (`sig::verify`), and in batches
//! (`sig::verify_batch`, the same verdicts) of one feed's entries and of ten cities' entries
//! mixed. Prints microseconds per signature; asserts that every check passes.
//!
//! ```text
//! cargo run --release -p intercity-tests --bin sig_bench -- --signatures 4096
//! ```

use std::time::Instant;

use intercity_protocol::entry::{DocId, Hash32, SIGNING_TAG, Scope, SignedEntry, sign_entry};
use intercity_protocol::identity::CityKey;
use intercity_protocol::sig;

/// `n` entries signed by `cities` keys in turn.
fn entries(n: usize, cities: u8) -> Vec<SignedEntry> {
    let keys: Vec<CityKey> = (0..cities)
        .map(|c| CityKey::from_secret([c + 1; 32]))
        .collect();
    (0..n)
        .map(|i| {
            let key = &keys[i % keys.len()];
            sign_entry(
                key,
                Scope::Federation,
                i as u64 + 1,
                // (seq 1 has no prev; no later entry may have a zero one)
                Hash32([if i == 0 { 0 } else { 1 + (i % 200) as u8 }; 32]),
                DocId([(i >> 8) as u8; 16]),
                format!("practice {i}").as_bytes(),
                1_700_000_000_000 + i as i64,
            )
        })
        .collect()
}

fn per_signature(what: &str, n: usize, f: impl FnOnce() -> bool) {
    let t = Instant::now();
    assert!(f(), "{what}: a signature failed");
    println!(
        "{what:<46} {:>6.1} µs per signature",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    let n = intercity_tests::arg("--signatures", 4096).max(1);
    for cities in [1u8, 10] {
        let signed = entries(n, cities);
        let headers: Vec<[u8; 150]> = signed.iter().map(|e| e.header.encode()).collect();
        let messages: Vec<Vec<u8>> = headers
            .iter()
            .map(|h| [SIGNING_TAG, h.as_slice()].concat())
            .collect();
        let parts: Vec<[&[u8]; 2]> = headers
            .iter()
            .map(|h| [SIGNING_TAG, h.as_slice()])
            .collect();
        let items: Vec<sig::Item<'_>> = signed
            .iter()
            .zip(&parts)
            .map(|(e, p)| (e.header.author, p.as_slice(), &e.signature))
            .collect();
        println!("{n} entries by {cities} cities:");
        per_signature("  verify_strict (up to sync/3)", n, || {
            signed.iter().zip(&messages).all(|(e, m)| {
                e.header
                    .author
                    .verifying_key()
                    .is_ok_and(|k| k.verify_strict(m, &e.signature).is_ok())
            })
        });
        per_signature("  sig::verify, one at a time", n, || {
            items.iter().all(|(k, m, s)| sig::verify(k, m, s))
        });
        for size in [64, 512] {
            per_signature(
                &format!("  sig::verify_batch, batches of {size}"),
                n,
                || items.chunks(size).all(sig::verify_batch),
            );
        }
        let encoded: Vec<[u8; 214]> = signed.iter().map(SignedEntry::encode).collect();
        per_signature("  entry::check_batch of 512 (decoding too)", n, || {
            encoded.chunks(512).all(|chunk| {
                let bytes: Vec<&[u8]> = chunk.iter().map(|e| e.as_slice()).collect();
                intercity_protocol::entry::check_batch(&bytes)
                    .iter()
                    .all(Option::is_some)
            })
        });
    }
}
