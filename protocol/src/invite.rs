//! Invitations: a signed token by which one city tells another how to reach it.
//!
//! `intercity invite create --for CITY_ID` makes a token signed by the inviter that names the
//! inviter (key, display name, dialable addresses), the city it is for, an optional working
//! group, and an expiry. The invited city checks the signature, that the token is for it and
//! not expired, then adds the inviter to its roster and dials it. The inviter added the invited
//! city to its own roster when it created the token, so the first connection is admitted by
//! both sides' allow lists; nobody outside a roster ever gets a protocol stream.
//!
//! Encoding: the text `ic1` followed by base58btc of `body || signature`, where `body` is the
//! UTF-8 JSON of [`Invitation`] and the ed25519 signature covers [`INVITE_TAG`] `|| body`.

use serde::{Deserialize, Serialize};

use crate::identity::{CityId, CityKey};

/// Domain-separation tag for invitation signatures.
pub const INVITE_TAG: &[u8] = b"intercity/invite/v1\0";
/// The longest token accepted, in characters.
pub const MAX_TOKEN_CHARS: usize = 8 * 1024;

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
    /// The invited city.
    pub invitee: CityId,
    /// A working group the invited city was added to, if any (record id, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Expiry, ms since the epoch.
    pub expires: i64,
}

impl Invitation {
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

    /// Decodes and verifies a token addressed to `me`, valid at `now_ms`.
    pub fn from_token(token: &str, me: &CityId, now_ms: i64) -> Result<Invitation, InviteError> {
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
        if inv.invitee != *me {
            return Err(InviteError::NotForUs(inv.invitee));
        }
        if inv.expires < now_ms {
            return Err(InviteError::Expired);
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
            invitee: brno,
            group: None,
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
}
