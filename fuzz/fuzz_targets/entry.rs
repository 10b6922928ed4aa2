//! Signed entries and the values a node stores: decoders of bytes from peers and from disk.
#![no_main]

use intercity_protocol::entry::{FeedId, SignedEntry};
use intercity_protocol::ingest::{ChangeInfo, FeedHead, ForkProof, StoredEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = SignedEntry::decode(data) {
        assert_eq!(&e.encode()[..], data);
        let _ = e.verify();
    }
    let _ = StoredEntry::decode(data);
    let _ = FeedHead::decode(data);
    let _ = ChangeInfo::decode(data);
    if let Ok(proof) = ForkProof::decode(data) {
        let _ = proof.verify();
    }
    let _ = FeedId::from_bytes(data);
});
