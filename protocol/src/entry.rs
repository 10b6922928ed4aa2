//! Signed feed entries.
//!
//! Every local change becomes an entry in its author's feed; one feed per (author, scope). An
//! entry is a fixed-layout header, an ed25519 signature over the header with a domain-separation
//! tag, and a payload (the raw Automerge change bytes) bound by its hash and length. The byte
//! layout is specified in `docs/protocol.md`; it is canonical: one header has one encoding.
//!
//! ```text
//! offset size field
//!      0    1 version (1)
//!      1   32 author: ed25519 public key
//!     33    1 scope tag: 0 = federation, 1 = working group
//!     34   16 scope group id (zero for the federation)
//!     50    8 seq, u64 big-endian, first entry is 1
//!     58   32 prev: hash of entry seq-1 (all zero for seq 1)
//!     90   16 doc id
//!    106   32 payload hash: SHA-256 of the payload
//!    138    4 payload length, u32 big-endian
//!    142    8 timestamp, i64 big-endian, milliseconds since the Unix epoch
//!    150   64 signature over SIGNING_TAG || header[0..150]
//! ```

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::identity::{CityId, CityKey};

/// Header format version.
pub const ENTRY_VERSION: u8 = 1;
/// Length of the encoded header, without the signature.
pub const HEADER_LEN: usize = 150;
/// Length of an encoded signed entry (header and signature).
pub const SIGNED_ENTRY_LEN: usize = HEADER_LEN + 64;
/// The largest payload (one Automerge change) accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Domain-separation tag prepended to the header before signing.
pub const SIGNING_TAG: &[u8] = b"intercity/entry/v1\0";

/// Errors decoding or verifying an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// The signed entry has the wrong length.
    #[error("an entry is {SIGNED_ENTRY_LEN} bytes; got {0}")]
    Length(usize),
    /// Unknown header version.
    #[error("unknown entry version {0}; this node speaks version {ENTRY_VERSION}")]
    Version(u8),
    /// Unknown scope tag, or a federation scope with a non-zero group id.
    #[error("malformed scope in entry header")]
    Scope,
    /// Seq 0, or a first entry with a non-zero backlink.
    #[error("malformed seq/backlink: {0}")]
    Seq(&'static str),
    /// The payload is larger than allowed.
    #[error("payload of {0} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")]
    PayloadTooLarge(usize),
    /// The signature does not verify against the author's key.
    #[error("signature does not verify for author {0}")]
    BadSignature(CityId),
    /// A text id could not be parsed.
    #[error("`{0}` is not a valid id: {1}")]
    BadId(String, &'static str),
}

/// A 32-byte SHA-256 hash (of an entry or a payload).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Hash32(Sha256::digest(data).into())
    }
    /// True for the all-zero hash (the backlink of a feed's first entry).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", &hex::encode(self.0)[..12])
    }
}

/// A document id: 16 bytes derived from the document's first (genesis) change.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(pub [u8; 16]);

impl DocId {
    /// The id of the document whose genesis change has this hash:
    /// the first 16 bytes of SHA-256("intercity/doc/v1\0" || change hash).
    pub fn for_genesis(change_hash: &automerge::ChangeHash) -> Self {
        let mut h = Sha256::new();
        h.update(b"intercity/doc/v1\0");
        h.update(change_hash.0);
        let digest: [u8; 32] = h.finalize().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        DocId(id)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({self})")
    }
}
impl FromStr for DocId {
    type Err = EntryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| EntryError::BadId(s.into(), "not hex"))?;
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| EntryError::BadId(s.into(), "a record id is 32 hex characters"))?;
        Ok(DocId(arr))
    }
}

/// As text: the 32 hex characters.
impl serde::Serialize for DocId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DocId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who receives a feed: every member city, or only one working group's members.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Scope {
    /// Public to all member cities of the federation.
    Federation,
    /// Only the members of this working group (the group's document id).
    Group(DocId),
}

impl Scope {
    /// The 17-byte canonical encoding (tag and group id).
    pub fn to_bytes(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        if let Scope::Group(id) = self {
            out[0] = 1;
            out[1..].copy_from_slice(&id.0);
        }
        out
    }
    /// Decodes the 17-byte encoding.
    pub fn from_bytes(b: &[u8; 17]) -> Result<Self, EntryError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[1..]);
        match b[0] {
            0 if id == [0; 16] => Ok(Scope::Federation),
            1 => Ok(Scope::Group(DocId(id))),
            _ => Err(EntryError::Scope),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Federation => f.write_str("federation"),
            Scope::Group(id) => write!(f, "group:{id}"),
        }
    }
}

/// A feed: the append-only log of one author in one scope.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct FeedId {
    /// The city that writes the feed.
    pub author: CityId,
    /// Who receives it.
    pub scope: Scope,
}

impl FeedId {
    /// 49-byte key: author then scope; sorts feeds by author.
    pub fn to_bytes(&self) -> [u8; 49] {
        let mut out = [0u8; 49];
        out[..32].copy_from_slice(self.author.as_bytes());
        out[32..].copy_from_slice(&self.scope.to_bytes());
        out
    }
    /// Decodes [`FeedId::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() != 49 {
            return Err(EntryError::Length(b.len()));
        }
        let mut author = [0u8; 32];
        author.copy_from_slice(&b[..32]);
        let mut scope = [0u8; 17];
        scope.copy_from_slice(&b[32..]);
        Ok(FeedId {
            author: CityId::from_bytes(author),
            scope: Scope::from_bytes(&scope)?,
        })
    }
}

/// The signed part of an entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Header {
    /// The city that wrote the entry.
    pub author: CityId,
    /// The scope of its feed.
    pub scope: Scope,
    /// Position in the feed, starting at 1.
    pub seq: u64,
    /// Hash of the previous entry of the feed. For seq 1: zero, or, in a working-group feed
    /// of a successor key, the hash of the succession statement that made it one (§15.6).
    pub prev: Hash32,
    /// The document the change belongs to.
    pub doc: DocId,
    /// SHA-256 of the payload.
    pub payload_hash: Hash32,
    /// Length of the payload in bytes.
    pub payload_len: u32,
    /// Milliseconds since the Unix epoch, as claimed by the author.
    pub timestamp: i64,
}

impl Header {
    /// The feed this entry belongs to.
    pub fn feed(&self) -> FeedId {
        FeedId {
            author: self.author,
            scope: self.scope,
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = ENTRY_VERSION;
        b[1..33].copy_from_slice(self.author.as_bytes());
        b[33..50].copy_from_slice(&self.scope.to_bytes());
        b[50..58].copy_from_slice(&self.seq.to_be_bytes());
        b[58..90].copy_from_slice(&self.prev.0);
        b[90..106].copy_from_slice(&self.doc.0);
        b[106..138].copy_from_slice(&self.payload_hash.0);
        b[138..142].copy_from_slice(&self.payload_len.to_be_bytes());
        b[142..150].copy_from_slice(&self.timestamp.to_be_bytes());
        b
    }

    /// Decodes and checks the structure (not the signature).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, EntryError> {
        if b[0] != ENTRY_VERSION {
            return Err(EntryError::Version(b[0]));
        }
        let arr = |r: std::ops::Range<usize>| -> [u8; 32] {
            let mut a = [0u8; 32];
            a.copy_from_slice(&b[r]);
            a
        };
        let mut scope = [0u8; 17];
        scope.copy_from_slice(&b[33..50]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[50..58]);
        let mut doc = [0u8; 16];
        doc.copy_from_slice(&b[90..106]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&b[138..142]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[142..150]);
        let header = Header {
            author: CityId::from_bytes(arr(1..33)),
            scope: Scope::from_bytes(&scope)?,
            seq: u64::from_be_bytes(seq),
            prev: Hash32(arr(58..90)),
            doc: DocId(doc),
            payload_hash: Hash32(arr(106..138)),
            payload_len: u32::from_be_bytes(len),
            timestamp: i64::from_be_bytes(ts),
        };
        if header.seq == 0 {
            return Err(EntryError::Seq("seq starts at 1"));
        }
        if header.seq > 1 && header.prev.is_zero() {
            return Err(EntryError::Seq("missing backlink"));
        }
        if header.payload_len as usize > MAX_PAYLOAD_BYTES {
            return Err(EntryError::PayloadTooLarge(header.payload_len as usize));
        }
        Ok(header)
    }

    /// The bytes the signature covers: the tag, then the header.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(SIGNING_TAG.len() + HEADER_LEN);
        m.extend_from_slice(SIGNING_TAG);
        m.extend_from_slice(&self.encode());
        m
    }

    /// Signs the header with `key` (which must be the author's).
    pub fn sign(self, key: &CityKey) -> SignedEntry {
        let signature = key.sign(&self.signing_bytes());
        SignedEntry {
            header: self,
            signature,
        }
    }
}

/// A header with its signature: what a feed stores and peers exchange.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedEntry {
    /// The signed header.
    pub header: Header,
    /// ed25519 signature over [`Header::signing_bytes`].
    pub signature: Signature,
}

impl SignedEntry {
    /// The 214-byte encoding: header then signature.
    pub fn encode(&self) -> [u8; SIGNED_ENTRY_LEN] {
        let mut b = [0u8; SIGNED_ENTRY_LEN];
        b[..HEADER_LEN].copy_from_slice(&self.header.encode());
        b[HEADER_LEN..].copy_from_slice(&self.signature.to_bytes());
        b
    }

    /// Decodes the structure; does not verify the signature (see [`SignedEntry::verify`]).
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() != SIGNED_ENTRY_LEN {
            return Err(EntryError::Length(b.len()));
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&b[..HEADER_LEN]);
        let mut s = [0u8; 64];
        s.copy_from_slice(&b[HEADER_LEN..]);
        Ok(SignedEntry {
            header: Header::decode(&h)?,
            signature: Signature::from_bytes(&s),
        })
    }

    /// Checks the signature against the author's key ([`crate::sig`]).
    pub fn verify(&self) -> Result<(), EntryError> {
        let header = self.header.encode();
        if crate::sig::verify(
            &self.header.author,
            &[SIGNING_TAG, &header],
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(EntryError::BadSignature(self.header.author))
        }
    }

    /// The entry hash: SHA-256 of the 214-byte encoding. The next entry's `prev` points here.
    pub fn hash(&self) -> Hash32 {
        Hash32::of(&self.encode())
    }
}

/// A signed entry whose signature this process has checked ([`check_batch`]): the pipeline
/// takes it without checking it again ([`crate::ingest::Batch::ingest_checked`]). Made only by
/// the check, it holds the bytes it vouches for, and vouches for no others. Never on the wire.
/// It may also carry its payload read ahead ([`crate::ingest::prepare`]).
#[derive(Clone, Debug)]
pub struct Checked {
    entry: Box<[u8; SIGNED_ENTRY_LEN]>,
    pub(crate) prepared: Option<Box<crate::ingest::Prepared>>,
}

impl Checked {
    /// Whether these are the bytes that were checked.
    pub fn covers(&self, entry: &[u8]) -> bool {
        self.entry.as_slice() == entry
    }

    /// Whether the entry's payload was read ahead.
    pub fn is_prepared(&self) -> bool {
        self.prepared.is_some()
    }

    /// About the bytes what was read ahead holds (the change, and the record it creates), for
    /// the bounds of queues.
    pub fn prepared_bytes(&self) -> usize {
        self.prepared.as_ref().map_or(0, |p| p.bytes())
    }
}

/// Checks the signatures of the entries that decode, as one batch ([`crate::sig::verify_batch`],
/// the same verdicts as [`SignedEntry::verify`] on each): if all hold, a [`Checked`] for each
/// of them; else, and for an entry that does not decode, None.
pub fn check_batch(entries: &[&[u8]]) -> Vec<Option<Checked>> {
    // What an entry that decodes signs is its own first bytes (decoding is one to one).
    let decoded: Vec<_> = entries
        .iter()
        .map(|b| {
            Some((
                SignedEntry::decode(b).ok()?,
                [SIGNING_TAG, &b[..HEADER_LEN]],
            ))
        })
        .collect();
    let items: Vec<crate::sig::Item<'_>> = decoded
        .iter()
        .flatten()
        .map(|(e, message)| (e.header.author, message.as_slice(), &e.signature))
        .collect();
    let hold = !items.is_empty() && crate::sig::verify_batch(&items);
    entries
        .iter()
        .zip(&decoded)
        .map(|(bytes, d)| {
            let bytes: [u8; SIGNED_ENTRY_LEN] = (*bytes).try_into().ok()?;
            (hold && d.is_some()).then(|| Checked {
                entry: Box::new(bytes),
                prepared: None,
            })
        })
        .collect()
}

/// Builds the next entry of a feed for `payload` and signs it.
pub fn sign_entry(
    key: &CityKey,
    scope: Scope,
    seq: u64,
    prev: Hash32,
    doc: DocId,
    payload: &[u8],
    timestamp: i64,
) -> SignedEntry {
    Header {
        author: key.id(),
        scope,
        seq,
        prev,
        doc,
        payload_hash: Hash32::of(payload),
        payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        timestamp,
    }
    .sign(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(seq: u64) -> SignedEntry {
        let key = CityKey::from_secret([9; 32]);
        let prev = if seq == 1 {
            Hash32::default()
        } else {
            Hash32([5; 32])
        };
        sign_entry(
            &key,
            Scope::Group(DocId([3; 16])),
            seq,
            prev,
            DocId([4; 16]),
            b"payload",
            1_487_836_800_000,
        )
    }

    #[test]
    fn encode_decode_verify() {
        let e = sample(2);
        let back = SignedEntry::decode(&e.encode()).expect("decodes");
        assert_eq!(back, e);
        back.verify().expect("verifies");
    }

    #[test]
    fn any_flipped_bit_breaks_the_signature_or_the_decoding() {
        let bytes = sample(3).encode();
        for i in 0..SIGNED_ENTRY_LEN {
            let mut b = bytes;
            b[i] ^= 0x01;
            let ok = SignedEntry::decode(&b).and_then(|e| e.verify());
            assert!(ok.is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn signature_is_domain_separated() {
        let key = CityKey::from_secret([9; 32]);
        let e = sample(1);
        // A signature over the bare header (no tag) must not verify.
        let bare = key.sign(&e.header.encode());
        let forged = SignedEntry {
            header: e.header.clone(),
            signature: bare,
        };
        assert!(forged.verify().is_err());
    }

    #[test]
    fn structural_errors() {
        assert_eq!(SignedEntry::decode(&[0; 10]), Err(EntryError::Length(10)));
        let mut b = sample(1).encode();
        b[0] = 2;
        assert_eq!(SignedEntry::decode(&b), Err(EntryError::Version(2)));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedEntry::decode(&bytes);
        }

        #[test]
        fn header_round_trips(seq in 2u64.., len in 0u32..=MAX_PAYLOAD_BYTES as u32, ts in any::<i64>(), g in any::<[u8;16]>()) {
            let h = Header { author: CityId::from_bytes([1;32]), scope: Scope::Group(DocId(g)), seq, prev: Hash32([2;32]), doc: DocId([3;16]), payload_hash: Hash32([4;32]), payload_len: len, timestamp: ts };
            prop_assert_eq!(Header::decode(&h.encode()).expect("decodes"), h);
        }
    }
}
