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

use ed25519_dalek::Signature;

use crate::entry::{DocId, Scope};
use crate::identity::{CityId, CityKey};

/// The document id a succession statement's entry names (no Automerge document has it: a
/// document's id is a genesis change's hash, and a genesis with this one is refused).
pub const SUCCESSION_DOC: DocId = DocId([0xff; 16]);
/// Domain-separation tag of the old key's signature.
pub const SUCCESSION_TAG: &[u8] = b"intercity/succession/v1\0";
/// Statement format version.
pub const SUCCESSION_VERSION: u8 = 1;
/// The most feeds one statement caps (one per working group the old key wrote in, and the
/// federation feed).
pub const MAX_CAPS: usize = 4096;
/// The longest chain of keys a city may pass through (root id, then successors); a statement
/// that would make it longer is refused.
pub const MAX_KEYS_PER_CITY: usize = 64;

const FIXED: usize = 99;
const CAP_LEN: usize = 25;

/// Why bytes are not a valid succession statement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SuccessionError {
    /// Wrong length or version, or caps out of order.
    #[error("not a succession statement: {0}")]
    Malformed(&'static str),
    /// The old key's signature does not verify.
    #[error("the old key's signature on the succession statement does not verify")]
    BadSignature,
}

/// A decoded, signature-checked succession statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The city (root id) whose key passes on.
    pub city: CityId,
    /// The key that signed the statement and passes its right on.
    pub old: CityId,
    /// The key that receives it.
    pub new: CityId,
    /// The last seq the old key keeps in each of its feeds, by scope, in increasing order. A
    /// feed not listed keeps nothing.
    pub caps: Vec<(Scope, u64)>,
}

impl Statement {
    /// Signs a statement with the old key: `caps` are sorted here. Returns the payload bytes.
    pub fn sign(city: CityId, old: &CityKey, new: CityId, mut caps: Vec<(Scope, u64)>) -> Vec<u8> {
        caps.sort_by_key(|(s, _)| s.to_bytes());
        caps.dedup_by_key(|(s, _)| s.to_bytes());
        caps.truncate(MAX_CAPS);
        let mut b = Vec::with_capacity(FIXED + CAP_LEN * caps.len() + 64);
        b.push(SUCCESSION_VERSION);
        b.extend_from_slice(city.as_bytes());
        b.extend_from_slice(old.id().as_bytes());
        b.extend_from_slice(new.as_bytes());
        b.extend_from_slice(&u16::try_from(caps.len()).unwrap_or(u16::MAX).to_be_bytes());
        for (scope, seq) in &caps {
            b.extend_from_slice(&scope.to_bytes());
            b.extend_from_slice(&seq.to_be_bytes());
        }
        let signature = old.sign(&signing_bytes(&b));
        b.extend_from_slice(&signature.to_bytes());
        b
    }

    /// Decodes a payload and checks the old key's signature.
    pub fn decode(b: &[u8]) -> Result<Self, SuccessionError> {
        if b.len() < FIXED + 64 {
            return Err(SuccessionError::Malformed("too short"));
        }
        let body = b.len() - 64;
        let statement = Self::decode_held(&b[..body])?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&b[body..]);
        if !statement
            .old
            .verify(&signing_bytes(&b[..body]), &Signature::from_bytes(&sig))
        {
            return Err(SuccessionError::BadSignature);
        }
        Ok(statement)
    }

    /// The statement without its signature, as a ledger keeps one it checked.
    pub fn encode_held(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED + CAP_LEN * self.caps.len());
        b.push(SUCCESSION_VERSION);
        b.extend_from_slice(self.city.as_bytes());
        b.extend_from_slice(self.old.as_bytes());
        b.extend_from_slice(self.new.as_bytes());
        b.extend_from_slice(
            &u16::try_from(self.caps.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for (scope, seq) in &self.caps {
            b.extend_from_slice(&scope.to_bytes());
            b.extend_from_slice(&seq.to_be_bytes());
        }
        b
    }

    /// Decodes [`Statement::encode_held`] (no signature to check).
    pub fn decode_held(b: &[u8]) -> Result<Self, SuccessionError> {
        if b.len() < FIXED {
            return Err(SuccessionError::Malformed("too short"));
        }
        if b[0] != SUCCESSION_VERSION {
            return Err(SuccessionError::Malformed("unknown version"));
        }
        let key = |at: usize| {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b[at..at + 32]);
            CityId::from_bytes(k)
        };
        let n = usize::from(u16::from_be_bytes([b[97], b[98]]));
        if n > MAX_CAPS {
            return Err(SuccessionError::Malformed("too many caps"));
        }
        if b.len() != FIXED + CAP_LEN * n {
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
            let scope =
                Scope::from_bytes(&s).map_err(|_| SuccessionError::Malformed("bad scope"))?;
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&b[at + 17..at + 25]);
            caps.push((scope, u64::from_be_bytes(seq)));
        }
        let statement = Statement {
            city: key(1),
            old: key(33),
            new: key(65),
            caps,
        };
        if statement.old == statement.new {
            return Err(SuccessionError::Malformed("the new key is the old key"));
        }
        Ok(statement)
    }

    /// The last seq the old key keeps in its feed of `scope` (0: none).
    pub fn cap(&self, scope: &Scope) -> u64 {
        self.caps
            .binary_search_by_key(&scope.to_bytes(), |(s, _)| s.to_bytes())
            .map_or(0, |i| self.caps[i].1)
    }
}

fn signing_bytes(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SUCCESSION_TAG.len() + body.len());
    m.extend_from_slice(SUCCESSION_TAG);
    m.extend_from_slice(body);
    m
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
