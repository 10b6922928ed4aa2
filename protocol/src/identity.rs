//! City identity: an ed25519 keypair whose libp2p `PeerId` is the city id.
//!
//! The libp2p identity of a node is built from the same secret key, so the Noise handshake
//! authenticates the city and the `PeerId` string (`12D3KooW…`) is what people see. This module
//! computes that string itself (identity multihash of the protobuf-encoded public key, base58),
//! so the protocol crate needs no libp2p.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Length of a city id (an ed25519 public key) in bytes.
pub const CITY_ID_LEN: usize = 32;

/// Errors about keys and city ids.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The text is not a city id.
    #[error("`{0}` is not a city id: expected a PeerId like 12D3KooW… or 64 hex characters")]
    BadCityId(String),
    /// The bytes are not a valid ed25519 public key.
    #[error("the city id is not a valid ed25519 public key")]
    BadPublicKey,
    /// A secret key file had the wrong length.
    #[error("a secret key is 32 bytes; got {0}")]
    BadSecretLength(usize),
    /// The operating system could not provide randomness.
    #[error("no randomness available from the operating system: {0}")]
    Random(String),
}

/// A city's public identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CityId([u8; CITY_ID_LEN]);

impl CityId {
    /// Wraps raw public-key bytes (not checked to be a curve point; see [`CityId::verifying_key`]).
    pub const fn from_bytes(bytes: [u8; CITY_ID_LEN]) -> Self {
        CityId(bytes)
    }

    /// The raw public-key bytes.
    pub const fn as_bytes(&self) -> &[u8; CITY_ID_LEN] {
        &self.0
    }

    /// The ed25519 verifying key, or an error if the bytes are not a valid point.
    ///
    /// Decompressing the point is a good part of a signature check, and a node checks many
    /// entries of the same few cities: decoded keys are kept in a small process-wide cache.
    pub fn verifying_key(&self) -> Result<VerifyingKey, IdentityError> {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock};
        /// Cities whose keys are kept; the cache starts over when full.
        const KEYS_CACHED: usize = 4096;
        static CACHE: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Ok(map) = cache.lock()
            && let Some(key) = map.get(&self.0)
        {
            return Ok(*key);
        }
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::BadPublicKey)?;
        if let Ok(mut map) = cache.lock() {
            if map.len() >= KEYS_CACHED {
                map.clear();
            }
            map.insert(self.0, key);
        }
        Ok(key)
    }

    /// Verifies `signature` over `message` under the protocol's rule ([`crate::sig`]).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        crate::sig::verify(self, &[message], signature)
    }

    /// The libp2p `PeerId` bytes: identity multihash of the protobuf-encoded public key.
    pub fn peer_id_bytes(&self) -> [u8; 38] {
        let mut out = [0u8; 38];
        // multihash: code 0x00 (identity), length 36; protobuf: field 1 = 1 (Ed25519), field 2 = key.
        out[..6].copy_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        out[6..].copy_from_slice(&self.0);
        out
    }

    /// A short form for tables: the last 8 characters of the PeerId string.
    pub fn short(&self) -> String {
        let s = self.to_string();
        format!("…{}", &s[s.len().saturating_sub(8)..])
    }
}

/// How many cities' names [`CITY_NAMES`] remembers (when full, it is emptied and starts again).
const MAX_REMEMBERED_NAMES: usize = 1024;

std::thread_local! {
    /// The base58 names of the cities written lately: base58 is a big-number conversion
    /// (about a microsecond a name), and the pipeline writes its author's name for every entry
    /// it judges. A name is a function of the id only.
    static CITY_NAMES: std::cell::RefCell<std::collections::HashMap<CityId, String>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

impl fmt::Display for CityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        CITY_NAMES.with_borrow_mut(|names| {
            if names.len() >= MAX_REMEMBERED_NAMES && !names.contains_key(self) {
                names.clear();
            }
            f.write_str(
                names
                    .entry(*self)
                    .or_insert_with(|| bs58::encode(self.peer_id_bytes()).into_string()),
            )
        })
    }
}

impl fmt::Debug for CityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CityId({self})")
    }
}

impl FromStr for CityId {
    type Err = IdentityError;

    /// Parses a PeerId string (`12D3KooW…`) or 64 hex characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::BadCityId(s.to_string());
        let s = s.trim();
        if s.len() == 64
            && let Ok(bytes) = hex::decode(s)
        {
            let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
            return Ok(CityId(arr));
        }
        let bytes = bs58::decode(s).into_vec().map_err(|_| bad())?;
        if bytes.len() != 38 || bytes[..6] != [0x00, 0x24, 0x08, 0x01, 0x12, 0x20] {
            return Err(bad());
        }
        let mut arr = [0u8; 32];
        arr.copy_from_slice(&bytes[6..]);
        Ok(CityId(arr))
    }
}

impl serde::Serialize for CityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CityId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A city's secret key. Signs feed entries; never leaves the data directory.
#[derive(Clone)]
pub struct CityKey(SigningKey);

impl CityKey {
    /// Generates a fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// A deterministic key from a seed (tests, fixtures and the demo only).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        CityKey(SigningKey::from_bytes(&secret))
    }

    /// Parses the 32 raw secret bytes of a key file.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| IdentityError::BadSecretLength(bytes.len()))?;
        Ok(Self::from_secret(arr))
    }

    /// The 32 secret bytes, for writing the key file (and for deriving the libp2p keypair).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This city's id.
    pub fn id(&self) -> CityId {
        CityId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` (callers add their own domain-separation tag).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }
}

impl fmt::Debug for CityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CityKey({})", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_string_round_trips_and_looks_like_libp2p() {
        let key = CityKey::from_secret([7; 32]);
        let id = key.id();
        let s = id.to_string();
        assert!(s.starts_with("12D3KooW"), "{s}");
        assert_eq!(s.parse::<CityId>().expect("parses"), id);
        assert_eq!(
            hex::encode(id.as_bytes()).parse::<CityId>().expect("hex"),
            id
        );
    }

    #[test]
    fn a_remembered_name_is_the_name_worked_out() {
        // Past the memo's bound, twice: every name read again equals its base58 encoding.
        let ids: Vec<CityId> = (0..MAX_REMEMBERED_NAMES + 10)
            .map(|n| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&(n as u64).to_be_bytes());
                CityKey::from_secret(secret).id()
            })
            .collect();
        for _ in 0..2 {
            for id in &ids {
                let name = id.to_string();
                assert_eq!(name, bs58::encode(id.peer_id_bytes()).into_string());
                assert_eq!(name.parse::<CityId>().expect("parses"), *id);
            }
        }
    }

    #[test]
    fn garbage_is_not_a_city_id() {
        assert!("Milan".parse::<CityId>().is_err());
        assert!("12D3KooW".parse::<CityId>().is_err());
    }

    #[test]
    fn signatures_verify_only_for_the_signer() {
        let a = CityKey::from_secret([1; 32]);
        let b = CityKey::from_secret([2; 32]);
        let sig = a.sign(b"hello");
        assert!(a.id().verify(b"hello", &sig));
        assert!(!a.id().verify(b"hellO", &sig));
        assert!(!b.id().verify(b"hello", &sig));
    }
}
