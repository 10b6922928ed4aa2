//! Key succession: a city moves its identity to a new key (§15.6 of docs/protocol.md).
//!
//! A city is named by its first key, its **root id**, for ever: records name it as owner,
//! groups as member, rosters as peer. The key that signs its entries may change. A
//! **succession statement** moves the signing right from an old key to a new one: the old key
//! signs it (consent of the holder of the city's rights), it names the last seq of every feed
//! the old key wrote (the **caps**: anything the old key signs past them is void), and it is
//! carried as the first entry of the new key's federation feed (so the new key signs it too,
//! and nobody else's key can be named). Every later feed of the new key names the statement in
//! its first entry's `prev`, so that whoever judges an entry knows which city wrote it from the
//! entry's own feed, whatever else it holds.
//!
//! ```text
//! offset   size   field
//!      0      1   version (1)
//!      1     32   city: the root id the keys belong to
//!     33     32   old key
//!     65     32   new key (the author of the carrying entry)
//!     97      2   n, number of caps, u16 big-endian, at most MAX_CAPS
//!     99   25·n   caps, strictly increasing by scope: scope (17 bytes), last seq (u64 BE)
//! 99+25n     64   old key's signature over SUCCESSION_TAG || bytes[0 .. 99+25n]
//! ```
//!
//! A **recovery** (version 2) is the statement of a city that lost its key (or whose key a
//! thief contests): the same body, with version 2, then, instead of the old key's signature,
//! the **designation** of guardians that the old key signed beforehand (an entry of its
//! federation feed, document [`GUARDIANS_DOC`], carried whole) and the guardians' vouches:
//!
//! ```text
//!   body       99+25n   as above, version 2
//!              214      the designation entry, signed by the old key
//!              2        L, the designation payload's length, u16 big-endian
//!              L        the designation payload (see Guardians)
//!              1        m, number of vouches
//!              97·m     vouches: guardian index (1, into the designation's list), the key it
//!                       signs with (32), its signature (64) over
//!                       RECOVERY_TAG || body || designation entry hash
//! ```

use ed25519_dalek::Signature;

use crate::entry::{DocId, HEADER_LEN, Hash32, SIGNED_ENTRY_LEN, Scope, SignedEntry};
use crate::identity::{CityId, CityKey};

/// The document id a succession statement's entry names (no Automerge document has it: a
/// document's id is a genesis change's hash, and a genesis with this one is refused).
pub const SUCCESSION_DOC: DocId = DocId([0xff; 16]);
/// The document id of a designation of guardians (§15.6), likewise.
pub const GUARDIANS_DOC: DocId = DocId([0xfe; 16]);
/// Domain-separation tag of the old key's signature.
pub const SUCCESSION_TAG: &[u8] = b"intercity/succession/v1\0";
/// Domain-separation tag of a guardian's vouch.
pub const RECOVERY_TAG: &[u8] = b"intercity/recovery/v1\0";
/// Statement format version: signed by the old key.
pub const SUCCESSION_VERSION: u8 = 1;
/// Statement format version: a recovery, vouched for by guardians.
pub const RECOVERY_VERSION: u8 = 2;
/// Designation format version.
pub const GUARDIANS_VERSION: u8 = 1;
/// The most feeds one statement caps (one per working group the old key wrote in, and the
/// federation feed).
pub const MAX_CAPS: usize = 4096;
/// The longest chain of keys a city may pass through (root id, then successors); a statement
/// that would make it longer is refused.
pub const MAX_KEYS_PER_CITY: usize = 64;
/// The most guardians one designation names.
pub const MAX_GUARDIANS: usize = 16;

const FIXED: usize = 99;
const CAP_LEN: usize = 25;
const VOUCH_LEN: usize = 97;

/// Why bytes are not a valid succession statement or designation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SuccessionError {
    /// Wrong length or version, or caps out of order.
    #[error("not a succession statement: {0}")]
    Malformed(&'static str),
    /// The old key's signature does not verify.
    #[error("the old key's signature on the succession statement does not verify")]
    BadSignature,
    /// A recovery's designation is not one the old key signed.
    #[error("the recovery's designation of guardians is not valid: {0}")]
    BadDesignation(&'static str),
    /// A guardian's vouch does not verify.
    #[error("a guardian's vouch on the recovery does not verify")]
    BadVouch,
    /// Not a designation of guardians.
    #[error("not a designation of guardians: {0}")]
    BadGuardians(&'static str),
}

/// A decoded, signature-checked succession statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The city (root id) whose key passes on.
    pub city: CityId,
    /// The key whose right passes on (it signed a planned statement; a recovery replaces it).
    pub old: CityId,
    /// The key that receives it.
    pub new: CityId,
    /// The last seq the old key keeps in each of its feeds, by scope, in increasing order. A
    /// feed not listed keeps nothing.
    pub caps: Vec<(Scope, u64)>,
    /// For a recovery: what the guardians' vouches rest on.
    pub recovery: Option<Recovery>,
}

/// What makes a recovery (§15.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The seq of the designation entry in the old key's federation feed.
    pub designation_seq: u64,
    /// Its entry hash.
    pub designation: Hash32,
    /// How many guardians must vouch (not kept in a ledger's copy: 0 there).
    pub threshold: u8,
    /// The vouches, as (guardian city, the key it signed with); their signatures are checked
    /// (not kept in a ledger's copy: empty there).
    pub vouches: Vec<(CityId, CityId)>,
}

/// A designation of guardians: the cities that may vouch for a new key of `city` if its key
/// is lost, and how many must (§15.6). The payload of an entry of document [`GUARDIANS_DOC`]
/// in the designating key's federation feed:
///
/// ```text
/// version (1) · city (32) · threshold t (1) · n (1) · n guardian city ids (32 each, strictly
/// increasing, none the city itself); 1 ≤ t ≤ n ≤ MAX_GUARDIANS, or t = n = 0 (the key names
/// nobody: it cannot be recovered)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Guardians {
    /// The city they guard.
    pub city: CityId,
    /// How many must vouch.
    pub threshold: u8,
    /// Who they are, in increasing order.
    pub guardians: Vec<CityId>,
}

impl Guardians {
    /// The payload bytes (guardians sorted, duplicates dropped).
    pub fn encode(&self) -> Vec<u8> {
        let mut g = self.guardians.clone();
        g.sort();
        g.dedup();
        g.truncate(MAX_GUARDIANS);
        let mut b = vec![GUARDIANS_VERSION];
        b.extend_from_slice(self.city.as_bytes());
        b.push(self.threshold);
        b.push(g.len() as u8);
        for c in &g {
            b.extend_from_slice(c.as_bytes());
        }
        b
    }

    /// Decodes and checks a designation.
    pub fn decode(b: &[u8]) -> Result<Self, SuccessionError> {
        let bad = SuccessionError::BadGuardians;
        if b.len() < 35 || b[0] != GUARDIANS_VERSION {
            return Err(bad("too short or an unknown version"));
        }
        let (t, n) = (b[33], usize::from(b[34]));
        // n = t = 0: the key names nobody (it cannot be recovered, §15.6).
        if n > MAX_GUARDIANS || (t == 0) != (n == 0) || usize::from(t) > n {
            return Err(bad(
                "the threshold must be 1 to n, and n 1 to 16 (or both 0)",
            ));
        }
        if b.len() != 35 + 32 * n {
            return Err(bad("length does not match the guardians"));
        }
        let city = id_at(b, 1);
        let guardians: Vec<CityId> = (0..n).map(|i| id_at(b, 35 + 32 * i)).collect();
        if guardians.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("guardians not in increasing order"));
        }
        if guardians.contains(&city) {
            return Err(bad("a city does not guard itself"));
        }
        Ok(Guardians {
            city,
            threshold: t,
            guardians,
        })
    }
}

fn id_at(b: &[u8], at: usize) -> CityId {
    let mut k = [0u8; 32];
    k.copy_from_slice(&b[at..at + 32]);
    CityId::from_bytes(k)
}

/// The body of a statement: version, city, keys and caps (caps sorted here).
fn body(
    version: u8,
    city: CityId,
    old: CityId,
    new: CityId,
    mut caps: Vec<(Scope, u64)>,
) -> Vec<u8> {
    caps.sort_by_key(|(s, _)| s.to_bytes());
    caps.dedup_by_key(|(s, _)| s.to_bytes());
    caps.truncate(MAX_CAPS);
    let mut b = Vec::with_capacity(FIXED + CAP_LEN * caps.len() + 64);
    b.push(version);
    b.extend_from_slice(city.as_bytes());
    b.extend_from_slice(old.as_bytes());
    b.extend_from_slice(new.as_bytes());
    b.extend_from_slice(&u16::try_from(caps.len()).unwrap_or(u16::MAX).to_be_bytes());
    for (scope, seq) in &caps {
        b.extend_from_slice(&scope.to_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
    }
    b
}

/// Reads a body; returns the statement (no recovery) and the body's length.
fn read_body(b: &[u8]) -> Result<(u8, Statement, usize), SuccessionError> {
    if b.len() < FIXED {
        return Err(SuccessionError::Malformed("too short"));
    }
    let version = b[0];
    if version != SUCCESSION_VERSION && version != RECOVERY_VERSION {
        return Err(SuccessionError::Malformed("unknown version"));
    }
    let n = usize::from(u16::from_be_bytes([b[97], b[98]]));
    if n > MAX_CAPS {
        return Err(SuccessionError::Malformed("too many caps"));
    }
    let len = FIXED + CAP_LEN * n;
    if b.len() < len {
        return Err(SuccessionError::Malformed("length does not match the caps"));
    }
    let mut caps = Vec::with_capacity(n);
    let mut last: Option<[u8; 17]> = None;
    for i in 0..n {
        let at = FIXED + CAP_LEN * i;
        let mut s = [0u8; 17];
        s.copy_from_slice(&b[at..at + 17]);
        if last.is_some_and(|l| l >= s) {
            return Err(SuccessionError::Malformed("caps not in increasing order"));
        }
        last = Some(s);
        let scope = Scope::from_bytes(&s).map_err(|_| SuccessionError::Malformed("bad scope"))?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[at + 17..at + 25]);
        caps.push((scope, u64::from_be_bytes(seq)));
    }
    let statement = Statement {
        city: id_at(b, 1),
        old: id_at(b, 33),
        new: id_at(b, 65),
        caps,
        recovery: None,
    };
    if statement.old == statement.new {
        return Err(SuccessionError::Malformed("the new key is the old key"));
    }
    Ok((version, statement, len))
}

impl Statement {
    /// Signs a statement with the old key: `caps` are sorted here. Returns the payload bytes.
    pub fn sign(city: CityId, old: &CityKey, new: CityId, caps: Vec<(Scope, u64)>) -> Vec<u8> {
        let mut b = body(SUCCESSION_VERSION, city, old.id(), new, caps);
        let signature = old.sign(&tagged(SUCCESSION_TAG, &b, None));
        b.extend_from_slice(&signature.to_bytes());
        b
    }

    /// The body of a recovery, which the guardians vouch for ([`Statement::vouch`]).
    pub fn recovery_body(
        city: CityId,
        old: CityId,
        new: CityId,
        caps: Vec<(Scope, u64)>,
    ) -> Vec<u8> {
        body(RECOVERY_VERSION, city, old, new, caps)
    }

    /// A guardian's vouch on a recovery body resting on the designation entry `designation`,
    /// signed with `key` (the guardian's key).
    pub fn vouch(body: &[u8], designation: &Hash32, key: &CityKey) -> [u8; 64] {
        key.sign(&tagged(RECOVERY_TAG, body, Some(designation)))
            .to_bytes()
    }

    /// A recovery's payload: its body, the designation entry and payload it rests on, and the
    /// vouches (guardian index, key, signature).
    pub fn assemble_recovery(
        body: &[u8],
        designation_entry: &[u8],
        designation_payload: &[u8],
        vouches: &[(u8, CityId, [u8; 64])],
    ) -> Vec<u8> {
        let mut b = body.to_vec();
        b.extend_from_slice(designation_entry);
        b.extend_from_slice(
            &u16::try_from(designation_payload.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        b.extend_from_slice(designation_payload);
        b.push(u8::try_from(vouches.len()).unwrap_or(u8::MAX));
        for (i, key, sig) in vouches {
            b.push(*i);
            b.extend_from_slice(key.as_bytes());
            b.extend_from_slice(sig);
        }
        b
    }

    /// A recovery's payload taken apart (its signatures are not checked here; see
    /// [`Statement::decode`]): body, designation entry, designation payload, vouches.
    #[allow(clippy::type_complexity)]
    pub fn recovery_parts(
        b: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>, Vec<(u8, CityId, [u8; 64])>), SuccessionError> {
        let (version, _, len) = read_body(b)?;
        if version != RECOVERY_VERSION {
            return Err(SuccessionError::Malformed("not a recovery"));
        }
        let rest = &b[len..];
        if rest.len() < DESIGNATION_AT {
            return Err(SuccessionError::BadDesignation("missing"));
        }
        let l = designation_len(rest)?;
        let vouches = vouches_after(rest, DESIGNATION_AT + l)?
            .chunks_exact(VOUCH_LEN)
            .map(vouch_of)
            .collect();
        Ok((
            b[..len].to_vec(),
            rest[..SIGNED_ENTRY_LEN].to_vec(),
            rest[DESIGNATION_AT..DESIGNATION_AT + l].to_vec(),
            vouches,
        ))
    }

    /// Decodes a payload and checks its signatures: the old key's (version 1), or the
    /// designation's and the vouches' (version 2; whether each vouching key is its guardian's
    /// is for the ledger to say).
    pub fn decode(b: &[u8]) -> Result<Self, SuccessionError> {
        let (version, mut statement, len) = read_body(b)?;
        let body = &b[..len];
        if version == SUCCESSION_VERSION {
            if b.len() != len + 64 {
                return Err(SuccessionError::Malformed("length does not match the caps"));
            }
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&b[len..]);
            if !statement.old.verify(
                &tagged(SUCCESSION_TAG, body, None),
                &Signature::from_bytes(&sig),
            ) {
                return Err(SuccessionError::BadSignature);
            }
            return Ok(statement);
        }
        let bad = SuccessionError::BadDesignation;
        let rest = &b[len..];
        if rest.len() < DESIGNATION_AT {
            return Err(bad("missing"));
        }
        let entry = SignedEntry::decode(&rest[..SIGNED_ENTRY_LEN])
            .map_err(|_| bad("its entry does not decode"))?;
        entry
            .verify()
            .map_err(|_| bad("its signature does not verify"))?;
        let h = &entry.header;
        if h.author != statement.old || h.scope != Scope::Federation || h.doc != GUARDIANS_DOC {
            return Err(bad("it is not a designation by the old key"));
        }
        let l = designation_len(rest)?;
        let payload = &rest[DESIGNATION_AT..DESIGNATION_AT + l];
        if payload.len() != h.payload_len as usize || Hash32::of(payload) != h.payload_hash {
            return Err(bad("its payload is not the one its entry signs"));
        }
        let guardians = Guardians::decode(payload)?;
        if guardians.city != statement.city {
            return Err(bad("it designates guardians of another city"));
        }
        let vouches = vouches_after(rest, DESIGNATION_AT + l)?;
        let m = vouches.len() / VOUCH_LEN;
        let designation = entry.hash();
        let message = tagged(RECOVERY_TAG, body, Some(&designation));
        let mut seen = Vec::with_capacity(m);
        let mut out = Vec::with_capacity(m);
        for v in vouches.chunks_exact(VOUCH_LEN) {
            let index = usize::from(v[0]);
            let Some(guardian) = guardians.guardians.get(index) else {
                return Err(SuccessionError::BadVouch);
            };
            if seen.contains(&index) {
                return Err(SuccessionError::Malformed("two vouches of one guardian"));
            }
            seen.push(index);
            let (_, key, sig) = vouch_of(v);
            if !key.verify(&message, &Signature::from_bytes(&sig)) {
                return Err(SuccessionError::BadVouch);
            }
            out.push((*guardian, key));
        }
        statement.recovery = Some(Recovery {
            designation_seq: h.seq,
            designation,
            threshold: guardians.threshold,
            vouches: out,
        });
        Ok(statement)
    }

    /// The statement as a ledger keeps one it checked: the body, and for a recovery the
    /// designation's seq and hash.
    pub fn encode_held(&self) -> Vec<u8> {
        let version = if self.recovery.is_some() {
            RECOVERY_VERSION
        } else {
            SUCCESSION_VERSION
        };
        let mut b = body(version, self.city, self.old, self.new, self.caps.clone());
        if let Some(r) = &self.recovery {
            b.extend_from_slice(&r.designation_seq.to_be_bytes());
            b.extend_from_slice(&r.designation.0);
        }
        b
    }

    /// Decodes [`Statement::encode_held`] (no signature to check).
    pub fn decode_held(b: &[u8]) -> Result<Self, SuccessionError> {
        let (version, mut statement, len) = read_body(b)?;
        let rest = &b[len..];
        match version {
            SUCCESSION_VERSION if rest.is_empty() => Ok(statement),
            RECOVERY_VERSION if rest.len() == 40 => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&rest[..8]);
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&rest[8..]);
                statement.recovery = Some(Recovery {
                    designation_seq: u64::from_be_bytes(seq),
                    designation: Hash32(hash),
                    threshold: 0,
                    vouches: Vec::new(),
                });
                Ok(statement)
            }
            _ => Err(SuccessionError::Malformed("length does not match the caps")),
        }
    }

    /// The last seq the old key keeps in its feed of `scope` (0: none).
    pub fn cap(&self, scope: &Scope) -> u64 {
        self.caps
            .binary_search_by_key(&scope.to_bytes(), |(s, _)| s.to_bytes())
            .map_or(0, |i| self.caps[i].1)
    }
}

/// `tag || body` (|| the designation hash, for a vouch): what a signature covers.
fn tagged(tag: &[u8], body: &[u8], designation: Option<&Hash32>) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + body.len() + 32);
    m.extend_from_slice(tag);
    m.extend_from_slice(body);
    if let Some(d) = designation {
        m.extend_from_slice(&d.0);
    }
    m
}

const _: () = assert!(HEADER_LEN + 64 == SIGNED_ENTRY_LEN);

/// Where a recovery's designation payload starts, after the statement body: the designation
/// entry, then its payload's length (u16 BE).
const DESIGNATION_AT: usize = SIGNED_ENTRY_LEN + 2;

/// The length of a recovery's designation payload (`rest`: the payload after the body, at
/// least [`DESIGNATION_AT`] long); checks that the payload and the vouch count follow.
fn designation_len(rest: &[u8]) -> Result<usize, SuccessionError> {
    let l = usize::from(u16::from_be_bytes([
        rest[SIGNED_ENTRY_LEN],
        rest[SIGNED_ENTRY_LEN + 1],
    ]));
    if rest.len() < DESIGNATION_AT + l + 1 {
        return Err(SuccessionError::Malformed("truncated"));
    }
    Ok(l)
}

/// A recovery's vouches: the count at `at`, then that many vouches, to the end.
fn vouches_after(rest: &[u8], at: usize) -> Result<&[u8], SuccessionError> {
    let m = usize::from(rest[at]);
    let vouches = &rest[at + 1..];
    if vouches.len() != m * VOUCH_LEN {
        return Err(SuccessionError::Malformed(
            "length does not match the vouches",
        ));
    }
    Ok(vouches)
}

/// One vouch: the guardian's index, the vouching key, the signature.
fn vouch_of(v: &[u8]) -> (u8, CityId, [u8; 64]) {
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&v[33..97]);
    (v[0], id_at(v, 1), sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_statement_round_trips_and_any_flipped_bit_breaks_it() {
        let old = CityKey::from_secret([1; 32]);
        let new = CityKey::from_secret([2; 32]).id();
        let caps = vec![
            (Scope::Group(DocId([9; 16])), 4),
            (Scope::Federation, 12),
            (Scope::Group(DocId([3; 16])), 1),
        ];
        let b = Statement::sign(old.id(), &old, new, caps);
        let s = Statement::decode(&b).expect("decodes");
        assert_eq!(Statement::decode_held(&s.encode_held()), Ok(s.clone()));
        assert_eq!((s.city, s.old, s.new), (old.id(), old.id(), new));
        assert_eq!(s.cap(&Scope::Federation), 12);
        assert_eq!(s.cap(&Scope::Group(DocId([9; 16]))), 4);
        assert_eq!(s.cap(&Scope::Group(DocId([7; 16]))), 0);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 1;
            assert!(
                Statement::decode(&c).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn a_statement_signed_by_another_key_does_not_verify() {
        let old = CityKey::from_secret([1; 32]);
        let thief = CityKey::from_secret([3; 32]);
        let new = CityKey::from_secret([2; 32]).id();
        let mut b = Statement::sign(old.id(), &thief, new, vec![]);
        // Claim the old key is `old` while `thief` signed.
        b[33..65].copy_from_slice(old.id().as_bytes());
        assert_eq!(Statement::decode(&b), Err(SuccessionError::BadSignature));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Statement::decode(&bytes);
        }
    }
}
