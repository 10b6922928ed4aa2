//! Signature checks (docs/protocol.md §4.1): one rule, whether a signature is checked alone or
//! in a batch with others.
//!
//! The rule is ed25519 (RFC 8032) with the encoding checks of ed25519-dalek's `verify_strict`
//! and the *cofactored* equation of ZIP-215:
//!
//! 1. the key A decodes to a curve point that is not of small order;
//! 2. R is the canonical encoding of a curve point (y < p) that is not of small order;
//! 3. s is canonical (s < ℓ);
//! 4. `[8]([s]B − [k]A − R)` is the identity, where `k = SHA-512(R ‖ A ‖ M) mod ℓ` over the
//!    bytes received.
//!
//! Every signature `verify_strict` accepts passes (its equation is the same without the factor
//! 8). The factor is what lets a batch decide as the single checks do: a batch checks
//! `[8](Σ zᵢsᵢ·B − Σ zᵢkᵢ·Aᵢ − Σ zᵢ·Rᵢ)` with random 128-bit weights zᵢ, which is the identity
//! when every signature passes alone, and, when one does not, is not except with probability
//! about 2⁻¹²⁸. Without the factor, a signature whose R carries a small-order component passes
//! or fails a batch depending on the weights (ed25519-dalek's `verify_batch` against its
//! `verify_strict`), and two nodes could decide differently on the same entry.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::Signature;
use sha2::{Digest, Sha512};

use crate::identity::CityId;

/// One signature, decoded and with its challenge computed: what both checks start from.
struct Decoded {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Whether `bytes` encode y < p = 2²⁵⁵ − 19 (the sign bit aside). A point whose x is 0 with the
/// sign bit set is the other non-canonical encoding; both such points are of small order.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f == 0x7f;
    let middle = bytes[1..31].iter().all(|b| *b == 0xff);
    !(top && middle && bytes[0] >= 0xed)
}

/// Rule 1: the key's point, or None if it fails the rule.
fn decode_key(key: &CityId) -> Option<EdwardsPoint> {
    let a = key.verifying_key().ok()?.to_edwards();
    (!a.is_small_order()).then_some(a)
}

/// Rules 1–3 and the challenge k, or None if the signature fails one of them.
fn decode(key: &CityId, message: &[&[u8]], signature: &Signature) -> Option<Decoded> {
    decode_with(decode_key(key)?, key, message, signature)
}

/// Rules 2–3 and the challenge k for a signature by `key`, whose point `a` passed rule 1.
fn decode_with(
    a: EdwardsPoint,
    key: &CityId,
    message: &[&[u8]],
    signature: &Signature,
) -> Option<Decoded> {
    let r_bytes = *signature.r_bytes();
    if !canonical_y(&r_bytes) {
        return None;
    }
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    if r.is_small_order() {
        return None;
    }
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.as_bytes());
    for part in message {
        h.update(part);
    }
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Some(Decoded { a, r, s, k })
}

/// Rule 4 for one signature.
fn holds(d: &Decoded) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&d.k, &-d.a, &d.s);
    (sb_minus_ka - d.r).mul_by_cofactor().is_identity()
}

/// Whether `signature` is `key`'s over the concatenation of `message`'s parts.
pub fn verify(key: &CityId, message: &[&[u8]], signature: &Signature) -> bool {
    decode(key, message, signature).is_some_and(|d| holds(&d))
}

/// One signature of a batch: the key, the message's parts, the signature.
pub type Item<'a> = (CityId, &'a [&'a [u8]], &'a Signature);

/// Whether every signature of `items` passes: the same answer as [`verify`] on each (up to the
/// probability of the module's note), for about a third of the work when many signatures share
/// a few keys. Empty: true.
pub fn verify_batch(items: &[Item<'_>]) -> bool {
    let mut decoded = Vec::with_capacity(items.len());
    // Each key is decoded once (rule 1 depends on the key alone): a range of one feed has one.
    let mut known: Vec<(CityId, EdwardsPoint)> = Vec::new();
    for (key, message, signature) in items {
        let a = match known.iter().rev().find(|(k, _)| k == key) {
            Some((_, a)) => *a,
            None => match decode_key(key) {
                Some(a) => {
                    known.push((*key, a));
                    a
                }
                None => return false,
            },
        };
        match decode_with(a, key, message, signature) {
            Some(d) => decoded.push((*key, d)),
            None => return false,
        }
    }
    let mut weights = vec![0u8; 16 * decoded.len()];
    if getrandom::fill(&mut weights).is_err() {
        // No randomness: one at a time, same answer.
        return decoded.iter().all(|(_, d)| holds(d));
    }
    let mut scalars = Vec::with_capacity(decoded.len() + 2);
    let mut points = Vec::with_capacity(decoded.len() + 2);
    let mut base = Scalar::ZERO;
    // Σ zᵢkᵢ per key: a range of one feed has one key, and one term for it.
    let mut keys: Vec<(CityId, EdwardsPoint, Scalar)> = Vec::new();
    for ((key, d), z) in decoded.iter().zip(weights.chunks_exact(16)) {
        let mut wide = [0u8; 32];
        wide[..16].copy_from_slice(z);
        let z = Scalar::from_bytes_mod_order(wide);
        base += z * d.s;
        let zk = z * d.k;
        match keys.iter_mut().rev().find(|(k, _, _)| k == key) {
            Some((_, _, sum)) => *sum += zk,
            None => keys.push((*key, d.a, zk)),
        }
        scalars.push(-z);
        points.push(d.r);
    }
    scalars.push(base);
    points.push(ED25519_BASEPOINT_POINT);
    for (_, a, sum) in keys {
        scalars.push(-sum);
        points.push(a);
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;

    /// A key made from its scalar, so that tests can sign in ways a `SigningKey` does not.
    struct Raw {
        a: Scalar,
        id: CityId,
    }

    fn raw(seed: u8, torsion: usize) -> Raw {
        let a = Scalar::from_bytes_mod_order([seed.max(1); 32]);
        let point = ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[torsion];
        Raw {
            a,
            id: CityId::from_bytes(point.compress().to_bytes()),
        }
    }

    /// Signs `message` with nonce `r` and R = [r]B + T (T the 8-torsion point `torsion`).
    fn sign(key: &Raw, message: &[u8], r: u8, torsion: usize) -> Signature {
        let r = Scalar::from_bytes_mod_order([r.max(1); 32]);
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion]).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(key.id.as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * key.a;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(&bytes)
    }

    fn strict(key: &CityId, message: &[u8], signature: &Signature) -> bool {
        key.verifying_key()
            .is_ok_and(|k| k.verify_strict(message, signature).is_ok())
    }

    /// What [`verify_batch`] of one item and [`verify`] say, which must agree.
    fn alone(key: &CityId, message: &[u8], signature: &Signature) -> bool {
        let single = verify(key, &[message], signature);
        let batch = verify_batch(&[(*key, &[message], signature)]);
        assert_eq!(single, batch, "single and batch disagree");
        single
    }

    #[test]
    fn honest_signatures_pass_as_under_verify_strict() {
        let key = crate::identity::CityKey::from_secret([3; 32]);
        let signature = key.sign(b"minutes");
        assert!(strict(&key.id(), b"minutes", &signature));
        assert!(alone(&key.id(), b"minutes", &signature));
        assert!(!alone(&key.id(), b"minutes!", &signature));
        let raw_key = raw(9, 0);
        assert!(alone(&raw_key.id, b"m", &sign(&raw_key, b"m", 5, 0)));
    }

    #[test]
    fn a_small_order_component_passes_here_and_fails_verify_strict() {
        // R = [r]B + T: the cofactorless equation is off by T; the cofactored one holds.
        let key = raw(7, 0);
        for t in 1..8 {
            let signature = sign(&key, b"agenda", 11, t);
            assert!(!strict(&key.id, b"agenda", &signature), "torsion {t}");
            assert!(alone(&key.id, b"agenda", &signature), "torsion {t}");
        }
        // A = [a]B + T, an honest signature: off by [k]T, which the factor 8 removes too.
        for t in 1..8 {
            let mixed = raw(7, t);
            let signature = sign(&mixed, b"agenda", 11, 0);
            assert!(alone(&mixed.id, b"agenda", &signature), "key torsion {t}");
        }
    }

    #[test]
    fn small_order_keys_and_points_and_wide_scalars_are_refused() {
        let message: &[u8] = b"anything";
        let key = raw(5, 0);
        let good = sign(&key, message, 13, 0);
        // A key of small order verifies anything with R = [s]B: refused.
        for (t, point) in EIGHT_TORSION.iter().enumerate() {
            let weak = CityId::from_bytes(point.compress().to_bytes());
            let s = Scalar::from_bytes_mod_order([4; 32]);
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice((ED25519_BASEPOINT_POINT * s).compress().as_bytes());
            bytes[32..].copy_from_slice(s.as_bytes());
            let forged = Signature::from_bytes(&bytes);
            assert!(!alone(&weak, message, &forged), "weak key {t}");
        }
        // R of small order.
        for (t, point) in EIGHT_TORSION.iter().enumerate() {
            let mut bytes = good.to_bytes();
            bytes[..32].copy_from_slice(point.compress().as_bytes());
            assert!(
                !alone(&key.id, message, &Signature::from_bytes(&bytes)),
                "R {t}"
            );
        }
        // s + ℓ: the same point, a second encoding.
        let mut bytes = good.to_bytes();
        let s =
            Scalar::from_canonical_bytes(bytes[32..].try_into().expect("32")).expect("canonical");
        let wide = add_l(s.as_bytes());
        bytes[32..].copy_from_slice(&wide);
        let malleated = Signature::from_bytes(&bytes);
        assert!(!strict(&key.id, message, &malleated));
        assert!(!alone(&key.id, message, &malleated));
    }

    /// s + ℓ as 32 little-endian bytes (s small enough not to overflow 256 bits).
    fn add_l(s: &[u8; 32]) -> [u8; 32] {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(L[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        out
    }

    #[test]
    fn a_non_canonical_r_is_refused() {
        // y = p + y' for a point whose y' < 19: the same point as y', another encoding.
        for y in 0u8..19 {
            let mut canonical = [0u8; 32];
            canonical[0] = y;
            let Some(point) = CompressedEdwardsY(canonical).decompress() else {
                continue;
            };
            let mut wide = [0xffu8; 32];
            wide[31] = 0x7f;
            wide[0] = 0xed + y;
            assert_eq!(CompressedEdwardsY(wide).decompress(), Some(point));
            assert!(!canonical_y(&wide));
            assert!(canonical_y(&canonical));
            let key = raw(2, 0);
            let mut bytes = sign(&key, b"x", 3, 0).to_bytes();
            bytes[..32].copy_from_slice(&wide);
            assert!(decode(&key.id, &[b"x"], &Signature::from_bytes(&bytes)).is_none());
        }
    }

    #[test]
    fn entries_with_small_order_components_pass_alone_and_in_a_batch() {
        use crate::entry::{DocId, Hash32, Header, SIGNING_TAG, Scope, SignedEntry, check_batch};
        let mut signed = Vec::new();
        for (i, t) in (0..8).enumerate() {
            let key = raw(i as u8 + 1, t % 2);
            let header = Header {
                author: key.id,
                scope: Scope::Federation,
                seq: 1,
                prev: Hash32::default(),
                doc: DocId([i as u8; 16]),
                payload_hash: Hash32::of(b"p"),
                payload_len: 1,
                timestamp: 0,
            };
            let mut message = SIGNING_TAG.to_vec();
            message.extend_from_slice(&header.encode());
            let signature = sign(&key, &message, 40 + i as u8, t);
            let entry = SignedEntry { header, signature };
            assert!(entry.verify().is_ok(), "torsion {t}");
            signed.push(entry.encode());
        }
        let bytes: Vec<&[u8]> = signed.iter().map(|e| e.as_slice()).collect();
        assert!(check_batch(&bytes).iter().all(Option::is_some));
        let mut bad = signed[3];
        bad[180] ^= 0x40;
        assert!(
            SignedEntry::decode(&bad)
                .expect("decodes")
                .verify()
                .is_err()
        );
        let mut with_bad = bytes.clone();
        with_bad[3] = &bad;
        assert!(check_batch(&with_bad).iter().all(Option::is_none));
    }

    /// How a signature of a property test is made: honest, with a small-order part, or broken.
    #[derive(Clone, Debug)]
    enum Make {
        Honest,
        TorsionR(usize),
        TorsionKey(usize),
        WrongMessage,
        FlippedBit(usize),
        SmallOrderR(usize),
    }

    fn make() -> impl Strategy<Value = Make> {
        prop_oneof![
            4 => Just(Make::Honest),
            2 => (1usize..8).prop_map(Make::TorsionR),
            2 => (1usize..8).prop_map(Make::TorsionKey),
            1 => Just(Make::WrongMessage),
            1 => (0usize..512).prop_map(Make::FlippedBit),
            1 => (0usize..8).prop_map(Make::SmallOrderR),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A batch passes exactly when every signature passes alone, whatever mix of honest,
        /// small-order-carrying and broken signatures it holds.
        #[test]
        fn a_batch_decides_as_its_signatures_alone(
            makes in proptest::collection::vec((make(), 1u8..4, 1u8..250), 1..12),
        ) {
            let mut owned = Vec::new();
            for (i, (m, seed, nonce)) in makes.iter().enumerate() {
                let message = vec![i as u8; 3];
                let (key, signature) = match m {
                    Make::Honest => { let k = raw(*seed, 0); let s = sign(&k, &message, *nonce, 0); (k, s) }
                    Make::TorsionR(t) => { let k = raw(*seed, 0); let s = sign(&k, &message, *nonce, *t); (k, s) }
                    Make::TorsionKey(t) => { let k = raw(*seed, *t); let s = sign(&k, &message, *nonce, 0); (k, s) }
                    Make::WrongMessage => { let k = raw(*seed, 0); let s = sign(&k, b"other", *nonce, 0); (k, s) }
                    Make::FlippedBit(b) => {
                        let k = raw(*seed, 0);
                        let mut bytes = sign(&k, &message, *nonce, 0).to_bytes();
                        bytes[b / 8] ^= 1 << (b % 8);
                        (k, Signature::from_bytes(&bytes))
                    }
                    Make::SmallOrderR(t) => {
                        let k = raw(*seed, 0);
                        let mut bytes = sign(&k, &message, *nonce, 0).to_bytes();
                        bytes[..32].copy_from_slice(EIGHT_TORSION[*t].compress().as_bytes());
                        (k, Signature::from_bytes(&bytes))
                    }
                };
                owned.push((key.id, message, signature));
            }
            let parts: Vec<[&[u8]; 1]> = owned.iter().map(|(_, m, _)| [m.as_slice()]).collect();
            let items: Vec<Item<'_>> = owned
                .iter()
                .zip(&parts)
                .map(|((k, _, s), p)| (*k, p.as_slice(), s))
                .collect();
            let singles: Vec<bool> = items.iter().map(|(k, m, s)| verify(k, m, s)).collect();
            for ((single, m), (k, msg, s)) in singles.iter().zip(&makes).zip(&owned) {
                let expected = matches!(m.0, Make::Honest | Make::TorsionR(_) | Make::TorsionKey(_));
                prop_assert_eq!(*single, expected, "{:?}", m);
                // Whatever verify_strict accepts passes here.
                if strict(k, msg, s) {
                    prop_assert!(*single);
                }
            }
            prop_assert_eq!(verify_batch(&items), singles.iter().all(|ok| *ok));
        }
    }
}
