//! How rows are keyed (feed and seq, pending and meta keys) and the small helpers of the write
//! path beside them (the fork index, a record's city).

use super::*;

pub(super) fn feed_seq(feed: &[u8; 49], seq: u64) -> Vec<u8> {
    let mut k = feed.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn u64_of(b: &[u8]) -> u64 {
    <[u8; 8]>::try_from(b).map(u64::from_be_bytes).unwrap_or(0)
}

/// Parses a `pending` key: the change waited for, the feed and the seq.
pub(super) fn parse_pending_key(k: &[u8]) -> Option<(ChangeHash, FeedId, u64)> {
    if k.len() != 32 + 49 + 8 {
        return None;
    }
    let dep = ChangeHash(k[..32].try_into().ok()?);
    let feed = FeedId::from_bytes(&k[32..81]).ok()?;
    Some((dep, feed, u64_of(&k[81..])))
}

pub(super) fn pending_key(dep: &ChangeHash, feed: &FeedId, seq: u64) -> Vec<u8> {
    let mut k = dep.0.to_vec();
    k.extend_from_slice(&feed_seq(&feed.to_bytes(), seq));
    k
}

/// Counts a fork proof into the index (a proof is stored once per feed and seq).
pub(super) fn note_fork(index: &mut ForkIndex, p: &ForkProof) {
    let h = &p.first.header;
    index.0 += 1;
    let seq = index.1.entry(h.feed()).or_insert(h.seq);
    *seq = (*seq).min(h.seq);
}

/// The key of a document's kind (the kind its genesis created) in `meta`.
pub(super) fn kind_key(doc: &DocId) -> Vec<u8> {
    let mut key = b"kind/".to_vec();
    key.extend_from_slice(&doc.0);
    key
}

/// The key of a document's standing removals (§15.5) in `meta`.
pub(super) fn cuts_key(doc: &DocId) -> Vec<u8> {
    let mut key = b"cuts/".to_vec();
    key.extend_from_slice(&doc.0);
    key
}

/// `aseq/` · feed (49) · document (16) · actor: the actor-seq index row in `meta`.
pub(super) fn actor_seq_key(feed: &FeedId, doc: &DocId, actor: &automerge::ActorId) -> Vec<u8> {
    let mut key = b"aseq/".to_vec();
    key.extend_from_slice(&feed.to_bytes());
    key.extend_from_slice(&doc.0);
    key.extend_from_slice(actor.to_bytes());
    key
}

/// The city a record names (a practice's city, a project's lead city), for the listing index.
pub(super) fn city_name(record: &intercity_protocol::record::Record) -> String {
    use intercity_protocol::record::Record;
    match record {
        Record::Practice(p) => p.city.clone(),
        Record::Project(p) => p.lead_city.clone(),
        Record::Group(_) => String::new(),
    }
}

/// The first byte of a `docs` row that names a payload row instead of holding a document
/// (Automerge's documents and changes start with their magic bytes, 0x85 first).
const PAYLOAD_REF: u8 = 0;

/// A `docs` row for a document that is one genesis change, held by payload row `key`.
pub(super) fn payload_ref(key: &Hash32) -> Vec<u8> {
    let mut row = Vec::with_capacity(33);
    row.push(PAYLOAD_REF);
    row.extend_from_slice(&key.0);
    row
}

/// The payload row a `docs` row names, if it names one.
pub(super) fn payload_named(row: &[u8]) -> Option<Hash32> {
    match row.split_first() {
        Some((&PAYLOAD_REF, key)) => key.try_into().ok().map(Hash32),
        _ => None,
    }
}
