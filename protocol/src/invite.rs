//! Invitations: a signed token by which one city tells another how to reach it.
//!
//! `intercity invite create` makes a token signed by the inviter that names the inviter (key,
//! display name, dialable addresses), a random code that redeems it, an optional working group,
//! optionally the one city that may redeem it, and an expiry. The invited city checks the
//! signature and the expiry, adds the inviter to its roster and dials it. On that first contact
//! it presents the token in a `Join` request (`crate::sync`); the inviter, which keeps the codes
//! it issued, then learns the new city: it adds it to its roster (and to the group), or queues
//! the join for its operator's approval when configured to.
//!
//! Encoding: the text `ic1` followed by base58btc of `body || signature`, where `body` is the
//! UTF-8 JSON of [`Invitation`] and the ed25519 signature covers [`INVITE_TAG`] `|| body`.

use serde::{Deserialize, Serialize};

use crate::identity::{CityId, CityKey};

/// Domain-separation tag for invitation signatures.
pub const INVITE_TAG: &[u8] = b"intercity/invite/v1\0";
/// The longest token accepted, in characters (a token with 8 addresses and a long name is
/// under 2,000).
pub const MAX_TOKEN_CHARS: usize = 4 * 1024;

/// Errors reading a token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InviteError {
    /// Not a token at all.
    #[error("not an Intercity invitation (it should start with `ic1`)")]
    Format,
    /// The signature does not verify.
    #[error("the invitation's signature does not verify; ask the inviting city for a new one")]
    Signature,
    /// The token is for another city.
    #[error("this invitation is for city {0}, not for this city")]
    NotForUs(CityId),
    /// No randomness for a new code.
    #[error("no randomness for an invitation code: {0}")]
    Random(String),
    /// The token expired.
    #[error("this invitation expired; ask the inviting city for a new one")]
    Expired,
}

/// What an invitation says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invitation {
    /// The inviting city.
    pub inviter: CityId,
    /// Its display name.
    pub name: String,
    /// Multiaddresses where it listens.
    pub addrs: Vec<String>,
    /// The one city that may redeem it; `None`: whichever city holds the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitee: Option<CityId>,
    /// A working group the joining city becomes a member of (record id, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The federation the joining city becomes a member of (the id, hex, of the federation's
    /// record, a working-group record whose chairs are its stewards). The invited city follows
    /// it: it trusts the federation's members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<String>,
    /// The secret that redeems the invitation: 16 random bytes, hex ([`Invitation::new_code`]).
    pub code: String,
    /// Expiry, ms since the epoch.
    pub expires: i64,
}

/// Characters of an invitation code.
pub const CODE_CHARS: usize = 32;

impl Invitation {
    /// A new random code.
    pub fn new_code() -> Result<String, InviteError> {
        let mut buf = [0u8; CODE_CHARS / 2];
        getrandom::fill(&mut buf).map_err(|e| InviteError::Random(e.to_string()))?;
        Ok(hex::encode(buf))
    }

    /// Signs and encodes the invitation; `key` must be the inviter's.
    pub fn to_token(&self, key: &CityKey) -> String {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut msg = INVITE_TAG.to_vec();
        msg.extend_from_slice(&body);
        let sig = key.sign(&msg);
        let mut bytes = body;
        bytes.extend_from_slice(&sig.to_bytes());
        format!("ic1{}", bs58::encode(bytes).into_string())
    }

    /// Decodes and verifies a token that city `me` may redeem, valid at `now_ms`.
    pub fn from_token(token: &str, me: &CityId, now_ms: i64) -> Result<Invitation, InviteError> {
        let inv = Self::verified(token)?;
        if let Some(invitee) = inv.invitee
            && invitee != *me
        {
            return Err(InviteError::NotForUs(invitee));
        }
        if inv.expires < now_ms {
            return Err(InviteError::Expired);
        }
        Ok(inv)
    }

    /// Decodes a token and checks its signature only (not who may redeem it, nor its expiry).
    pub fn verified(token: &str) -> Result<Invitation, InviteError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_CHARS {
            return Err(InviteError::Format);
        }
        let rest = token.strip_prefix("ic1").ok_or(InviteError::Format)?;
        let bytes = bs58::decode(rest)
            .into_vec()
            .map_err(|_| InviteError::Format)?;
        if bytes.len() < 65 {
            return Err(InviteError::Format);
        }
        let (body, sig) = bytes.split_at(bytes.len() - 64);
        let inv: Invitation = serde_json::from_slice(body).map_err(|_| InviteError::Format)?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| InviteError::Format)?;
        let mut msg = INVITE_TAG.to_vec();
        msg.extend_from_slice(body);
        if !inv
            .inviter
            .verify(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
        {
            return Err(InviteError::Signature);
        }
        if inv.code.len() != CODE_CHARS || !inv.code.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InviteError::Format);
        }
        Ok(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_bind_to_the_invitee() {
        let milan = CityKey::from_secret([1; 32]);
        let brno = CityKey::from_secret([2; 32]).id();
        let inv = Invitation {
            inviter: milan.id(),
            name: "Milan".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            invitee: Some(brno),
            group: None,
            federation: None,
            code: Invitation::new_code().expect("code"),
            expires: 2_000,
        };
        let token = inv.to_token(&milan);
        assert_eq!(
            Invitation::from_token(&token, &brno, 1_000),
            Ok(inv.clone())
        );
        assert_eq!(
            Invitation::from_token(&token, &brno, 3_000),
            Err(InviteError::Expired)
        );
        let warsaw = CityKey::from_secret([3; 32]).id();
        assert_eq!(
            Invitation::from_token(&token, &warsaw, 1_000),
            Err(InviteError::NotForUs(brno))
        );
        // Signed by someone else: the signature does not verify.
        let forged = Invitation {
            name: "Not Milan".into(),
            ..inv
        }
        .to_token(&CityKey::from_secret([9; 32]));
        assert_eq!(
            Invitation::from_token(&forged, &brno, 1_000),
            Err(InviteError::Signature)
        );
        assert_eq!(
            Invitation::from_token("hello", &brno, 0),
            Err(InviteError::Format)
        );
    }

    #[test]
    fn an_open_token_admits_any_holder_and_its_code_is_checked() {
        let milan = CityKey::from_secret([1; 32]);
        let inv = Invitation {
            inviter: milan.id(),
            name: "Milan".into(),
            addrs: Vec::new(),
            invitee: None,
            group: Some("ab".repeat(32)),
            federation: Some("cd".repeat(16)),
            code: Invitation::new_code().expect("code"),
            expires: 2_000,
        };
        assert_ne!(inv.code, Invitation::new_code().expect("code"));
        let token = inv.to_token(&milan);
        for secret in [2u8, 3] {
            let holder = CityKey::from_secret([secret; 32]).id();
            assert_eq!(
                Invitation::from_token(&token, &holder, 1_000),
                Ok(inv.clone())
            );
        }
        // Expired tokens still verify (the inviter recognises its own), but are not redeemable.
        assert_eq!(Invitation::verified(&token), Ok(inv.clone()));
        let bad_code = Invitation {
            code: "not hex".into(),
            ..inv
        }
        .to_token(&milan);
        assert_eq!(Invitation::verified(&bad_code), Err(InviteError::Format));
    }
}
