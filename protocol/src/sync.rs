//! The sync protocol `/intercity/sync/7`: wire messages, their byte encoding with hard size
//! limits, and the I/O-free reconciliation logic (which ranges to ask a peer for).
//!
//! Every message travels in one request-response stream as a frame: a u32 big-endian length
//! followed by that many bytes (at most [`MAX_FRAME_BYTES`]). The byte layout of each message is
//! in `docs/protocol.md`. A session is: compare a digest of the heads ([`Request::Digest`]:
//! one small round trip when the two hold the same), else exchange [`Request::Heads`] /
//! [`Response::Heads`] for the feeds of every scope both cities share, in pages of at most
//! [`MAX_HEADS`] feeds ([`HeadsPage`]), then ask [`Request::Range`] for each feed where the
//! peer is ahead (or at the same seq with another hash: its author forked the feed), in bounded
//! batches, in feed order. Live entries of working groups are pushed
//! with [`Request::Push`].

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::entry::{Checked, FeedId, Hash32, MAX_PAYLOAD_BYTES, SIGNED_ENTRY_LEN, Scope};
use crate::ingest::ForkProof;
use crate::invite::MAX_TOKEN_CHARS;

/// Protocol name for libp2p. Version 2: heads carry the head entry's hash. Version 3: a heads
/// exchange starts with a digest of the heads ([`Request::Digest`]), and range answers travel
/// packed ([`Packed`]). Version 6: a change's operations stay in view (verdicts changed).
/// Version 7: heads travel in pages ([`HeadsPage`]).
pub const PROTOCOL: &str = "/intercity/sync/7";

/// A feed's head as heads messages carry it: the feed, the seq of its latest entry held, and
/// that entry's hash (two nodes at one seq with different hashes hold a fork).
pub type Head = (FeedId, u64, Hash32);
/// The largest frame (one message) accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// At most this many entries in one [`Response::Entries`] or [`Request::Push`].
pub const MAX_BATCH_ENTRIES: usize = 512;
/// Payload bytes a responder puts in one batch before it stops (it sets `more`).
pub const BATCH_TARGET_BYTES: usize = 2 * 1024 * 1024;
/// Bytes of one [`Head`] on the wire: feed id, seq, hash.
pub const HEAD_LEN: usize = 49 + 8 + 32;
/// At most this many fork proofs in one [`Response::Forks`].
pub const MAX_FORK_PROOFS: usize = 64;
/// Bytes of one fork proof on the wire (its storage encoding: two signed entries).
pub const FORK_PROOF_LEN: usize = 2 * SIGNED_ENTRY_LEN;
/// At most this many feeds in one heads message: more travel in further pages ([`HeadsPage`]).
pub const MAX_HEADS: usize = 20_000;

/// One page of a heads exchange: the requester's heads of the feeds after `after` (from the
/// first feed if none) up to and including `until` (to the last feed if none), in feed order.
/// The responder answers with its own heads of the same feeds ([`Response::Heads`]).
///
/// The requester sets `until` to the last feed it sends when it holds more after it; each page
/// holds at most [`MAX_HEADS`] heads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadsPage {
    /// The feeds after this one (all from the first if none).
    pub after: Option<FeedId>,
    /// Up to and including this one (all to the last if none).
    pub until: Option<FeedId>,
    /// The requester's heads of those feeds, in feed order.
    pub heads: Vec<Head>,
}

impl HeadsPage {
    /// A page of every feed: `heads` are all the requester's.
    pub fn whole(heads: Vec<Head>) -> HeadsPage {
        HeadsPage {
            after: None,
            until: None,
            heads,
        }
    }

    /// Whether `feed` is among the feeds of a page from `after` to `until`.
    pub fn covers(after: Option<FeedId>, until: Option<FeedId>, feed: &FeedId) -> bool {
        after.is_none_or(|a| *feed > a) && until.is_none_or(|u| *feed <= u)
    }
}
/// At most this many bytes of text in an error message.
pub const MAX_ERROR_TEXT: usize = 1_024;
/// At most this many bytes in the display name of a [`Request::Join`] (100 characters of up
/// to 4 bytes).
pub const MAX_JOIN_NAME: usize = 400;
/// At most this many addresses in a [`Request::Join`].
pub const MAX_JOIN_ADDRS: usize = 16;
/// At most this many bytes in one address of a [`Request::Join`].
pub const MAX_JOIN_ADDR: usize = 512;

/// Errors decoding a message.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The message is larger than a limit allows.
    #[error("message too large: {0}")]
    TooLarge(String),
    /// The bytes end early or have trailing garbage.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// Unknown message tag.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
}

/// An entry and its payload as they travel. Two are equal when their bytes are (whether either
/// was checked does not count).
#[derive(Clone, Debug)]
pub struct WireEntry {
    /// The 214-byte signed entry.
    pub entry: Vec<u8>,
    /// The payload (an Automerge change).
    pub payload: Vec<u8>,
    /// Set when this process checked the entry's signature in a batch ([`check_signatures`]);
    /// not on the wire. The pipeline then does not check it again.
    pub checked: Option<Checked>,
}

impl PartialEq for WireEntry {
    fn eq(&self, other: &WireEntry) -> bool {
        (&self.entry, &self.payload) == (&other.entry, &other.payload)
    }
}

impl Eq for WireEntry {}

/// Checks the signatures of a range answer's entries as one batch (protocol.md §4.1) and, if
/// they all hold, marks each [`WireEntry::checked`]. Only the leading run of one feed, seq
/// after seq, is checked: the pipeline takes no more of a range answer (it stops at the first
/// entry that does not follow), and a peer must not make this node check signatures it would
/// never have checked. The entries after the run, and all of them if any signature fails, are
/// left to the pipeline, which checks them one by one and refuses the first that fails (the
/// batch's verdict on each is the single check's).
pub fn check_signatures(entries: &mut [WireEntry]) {
    let mut last: Option<(FeedId, u64)> = None;
    let run = entries
        .iter()
        .take_while(|w| {
            let Ok(e) = crate::entry::SignedEntry::decode(&w.entry) else {
                return false;
            };
            let this = (e.header.feed(), e.header.seq);
            let follows =
                last.is_none_or(|(feed, seq)| feed == this.0 && seq.checked_add(1) == Some(this.1));
            last = Some(this);
            follows
        })
        .count();
    let bytes: Vec<&[u8]> = entries[..run].iter().map(|w| w.entry.as_slice()).collect();
    let checked = crate::entry::check_batch(&bytes);
    for (w, c) in entries.iter_mut().zip(checked) {
        w.checked = c;
    }
}

/// [`check_signatures`], then reads ahead the payload of each entry whose signature held and
/// whose author `reads` ([`crate::ingest::prepare`]): the change decoded and, for a genesis
/// change, the record it creates, which the pipeline then takes instead of reading them again.
/// Done where a range answer is read (on the network's threads), it takes that work off the
/// thread that judges and writes entries, one after the other. `reads` says whose entries the
/// node judges for certain (its roster's keys): a peer must not make it read ahead entries it
/// then drops unjudged.
pub fn check_and_prepare(
    entries: &mut [WireEntry],
    reads: impl Fn(&crate::identity::CityId) -> bool,
) {
    check_and_prepare_rebuilt(entries, &[], reads);
}

/// [`check_and_prepare`] of entries of which those marked in `rebuilt` were rebuilt by
/// [`Packed::unpack_marked`], their payload hash computed from their payload: not hashed again.
fn check_and_prepare_rebuilt(
    entries: &mut [WireEntry],
    rebuilt: &[bool],
    reads: impl Fn(&crate::identity::CityId) -> bool,
) {
    check_signatures(entries);
    let mut held = 0;
    for (i, w) in entries.iter_mut().enumerate() {
        let Some(c) = &mut w.checked else { break };
        let Ok(e) = crate::entry::SignedEntry::decode(&w.entry) else {
            break;
        };
        if held >= MAX_PREPARED_ANSWER_BYTES {
            break;
        }
        if reads(&e.header.author) {
            let hashed = rebuilt.get(i).copied().unwrap_or(false);
            c.prepared = crate::ingest::prepare_hashed(&e, &w.payload, hashed).map(Box::new);
            held += c.prepared_bytes();
        }
    }
}

/// Most bytes [`check_and_prepare`] holds for one answer (as [`Checked::prepared_bytes`]
/// counts them): with the answer's own bytes (at most [`MAX_FRAME_BYTES`]), within what a
/// node's queue takes from one peer, so that a read ahead never makes an answer too large to
/// be queued.
pub const MAX_PREPARED_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A request from one city to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// "These are my heads for these feeds of the scopes we share; what are yours?"
    Heads(HeadsPage),
    /// "My heads for the scopes we share, and what I know of their forks, hash to this
    /// ([`heads_digest`]): do yours?" Answered [`Response::InSync`] or [`Response::Differ`].
    Digest(Hash32),
    /// "Send me entries of `feed` from seq `from` on, at most `max` of them."
    Range {
        /// The feed.
        feed: FeedId,
        /// First seq wanted.
        from: u64,
        /// Most entries wanted.
        max: u32,
    },
    /// "Here are new entries" (live delivery).
    Push(Vec<WireEntry>),
    /// "Which fork proofs do you hold for the scopes we share?"
    Forks,
    /// "I was invited: here is your invitation token, my name and where to reach me."
    Join {
        /// The invitation token (`ic1…`, at most [`crate::invite::MAX_TOKEN_CHARS`] bytes).
        token: String,
        /// The joining city's display name.
        name: String,
        /// Multiaddresses where the joining city listens.
        addrs: Vec<String>,
    },
    /// "My key is new to you: here are the succession statements that made it my city's,
    /// oldest first" (§15.6 of docs/protocol.md; a guest may send it, once per connection).
    Succession(Vec<WireEntry>),
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The responder's heads of the feeds the [`HeadsPage`] asked, in the scopes it shares
    /// with the requester: the first [`MAX_HEADS`] of them, and `more` if it holds heads of
    /// other feeds of that page after them (the requester's next page starts after the last).
    Heads {
        /// The heads, in feed order.
        heads: Vec<Head>,
        /// True if the responder holds heads of the page's feeds after the last one sent.
        more: bool,
    },
    /// Answers [`Request::Digest`]: the responder's heads hash the same.
    InSync,
    /// Answers [`Request::Digest`]: they do not (the requester sends its heads).
    Differ,
    /// Entries of a range, packed ([`pack`]): what [`Response::Entries`] carries, in fewer
    /// bytes. Unpacked by the receiver ([`Packed::unpack`]).
    Packed(Packed),
    /// Entries of a range, in feed order; `more` if the range was cut by a batch bound.
    Entries {
        /// The entries.
        entries: Vec<WireEntry>,
        /// True if more entries follow the last one sent.
        more: bool,
    },
    /// A push was received: how many entries were new.
    Ack {
        /// Entries stored (accepted, rejected or pending).
        stored: u32,
    },
    /// Fork proofs the responder holds for feeds of the scopes it shares with the requester,
    /// at most [`MAX_FORK_PROOFS`], in feed order.
    Forks(Vec<ForkProof>),
    /// A join was received: `waiting` if the inviter's operator must approve it first.
    Joined {
        /// True: queued for approval; false: the city is in the inviter's roster now.
        waiting: bool,
    },
    /// The request was refused.
    Error {
        /// 1: not in roster, 2: not allowed for this scope, 3: bad request, 4: busy,
        /// 5: invitation refused.
        code: u16,
        /// Human-readable text.
        message: String,
    },
}

const T_HEADS: u8 = 0x01;
const T_RANGE: u8 = 0x02;
const T_PUSH: u8 = 0x03;
const T_JOIN: u8 = 0x04;
const T_FORKS: u8 = 0x05;
const T_SUCCESSION: u8 = 0x06;
const T_DIGEST: u8 = 0x07;
const T_R_HEADS: u8 = 0x81;
const T_R_ENTRIES: u8 = 0x82;
const T_R_ACK: u8 = 0x83;
const T_R_JOINED: u8 = 0x84;
const T_R_FORKS: u8 = 0x85;
const T_R_IN_SYNC: u8 = 0x86;
const T_R_DIFFER: u8 = 0x87;
const T_R_PACKED: u8 = 0x88;
const T_R_ERROR: u8 = 0xff;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn feed(&mut self) -> Result<FeedId, WireError> {
        FeedId::from_bytes(self.take(49)?).map_err(|_| WireError::Malformed("bad feed id"))
    }
    fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed("trailing bytes"))
        }
    }
    /// An optional feed: a flag byte, then the feed if it is 1.
    fn bound(&mut self) -> Result<Option<FeedId>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.feed()?)),
            _ => Err(WireError::Malformed("bad page bound flag")),
        }
    }
    /// Heads in strictly increasing feed order, each of a feed after `after` and up to
    /// `until` ([`HeadsPage::covers`]).
    fn heads_of(
        &mut self,
        after: Option<FeedId>,
        until: Option<FeedId>,
    ) -> Result<Vec<Head>, WireError> {
        let heads = self.heads()?;
        let in_order = heads.windows(2).all(|w| w[0].0 < w[1].0);
        let covered = heads
            .iter()
            .all(|(f, _, _)| HeadsPage::covers(after, until, f));
        if !in_order || !covered {
            return Err(WireError::Malformed(
                "heads out of feed order or outside their page",
            ));
        }
        Ok(heads)
    }
    fn heads(&mut self) -> Result<Vec<Head>, WireError> {
        let n = self.u32()? as usize;
        if n > MAX_HEADS {
            return Err(WireError::TooLarge(format!("{n} heads, limit {MAX_HEADS}")));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (feed, seq) = (self.feed()?, self.u64()?);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(self.take(32)?);
            out.push((feed, seq, Hash32(hash)));
        }
        Ok(out)
    }
    /// A u16-length-prefixed UTF-8 text of at most `max` bytes.
    fn text(&mut self, max: usize, what: &str) -> Result<String, WireError> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(WireError::TooLarge(format!(
                "{what} of {len} bytes, limit {max}"
            )));
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| WireError::Malformed("bad UTF-8"))
    }
    fn entries(&mut self) -> Result<Vec<WireEntry>, WireError> {
        let n = self.u32()? as usize;
        if n > MAX_BATCH_ENTRIES {
            return Err(WireError::TooLarge(format!(
                "{n} entries, limit {MAX_BATCH_ENTRIES}"
            )));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let entry = self.take(SIGNED_ENTRY_LEN)?.to_vec();
            let payload = self.payload()?;
            out.push(WireEntry {
                entry,
                payload,
                checked: None,
            });
        }
        Ok(out)
    }
    /// A u32-length-prefixed payload of at most [`MAX_PAYLOAD_BYTES`].
    fn payload(&mut self) -> Result<Vec<u8>, WireError> {
        let len = self.u32()? as usize;
        if len > MAX_PAYLOAD_BYTES {
            return Err(WireError::TooLarge(format!(
                "payload of {len} bytes, limit {MAX_PAYLOAD_BYTES}"
            )));
        }
        Ok(self.take(len)?.to_vec())
    }
}

fn put_heads(out: &mut Vec<u8>, heads: &[Head]) {
    out.extend_from_slice(&(heads.len() as u32).to_be_bytes());
    for (feed, seq, hash) in heads {
        out.extend_from_slice(&feed.to_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&hash.0);
    }
}

fn put_entries(out: &mut Vec<u8>, entries: &[WireEntry]) {
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.entry);
        out.extend_from_slice(&(e.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.payload);
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Puts a u16-length-prefixed text, cut to `max` bytes (the decoder's limit).
fn put_text(out: &mut Vec<u8>, text: &str, max: usize) {
    let text = clip(text, max);
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn check_size(bytes: &[u8]) -> Result<(), WireError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(format!(
            "{} bytes, limit {MAX_FRAME_BYTES}",
            bytes.len()
        )));
    }
    Ok(())
}

fn entries_len(entries: &[WireEntry]) -> usize {
    4 + entries
        .iter()
        .map(|e| e.entry.len() + 4 + e.payload.len())
        .sum::<usize>()
}

impl Request {
    /// Length of [`Request::encode`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Request::Heads(p) => {
                1 + [p.after, p.until]
                    .iter()
                    .map(|f| 1 + f.map_or(0, |_| 49))
                    .sum::<usize>()
                    + 4
                    + p.heads.len() * HEAD_LEN
            }
            Request::Digest(_) => 1 + 32,
            Request::Range { .. } => 1 + 49 + 8 + 4,
            Request::Push(e) | Request::Succession(e) => 1 + entries_len(e),
            Request::Forks => 1,
            Request::Join { token, name, addrs } => {
                1 + 2
                    + clip(token, MAX_TOKEN_CHARS).len()
                    + 2
                    + clip(name, MAX_JOIN_NAME).len()
                    + 1
                    + addrs
                        .iter()
                        .take(MAX_JOIN_ADDRS)
                        .map(|a| 2 + clip(a, MAX_JOIN_ADDR).len())
                        .sum::<usize>()
            }
        }
    }

    /// The message bytes (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Heads(p) => {
                out.push(T_HEADS);
                for bound in [p.after, p.until] {
                    match bound {
                        None => out.push(0),
                        Some(f) => {
                            out.push(1);
                            out.extend_from_slice(&f.to_bytes());
                        }
                    }
                }
                put_heads(&mut out, &p.heads);
            }
            Request::Digest(d) => {
                out.push(T_DIGEST);
                out.extend_from_slice(&d.0);
            }
            Request::Range { feed, from, max } => {
                out.push(T_RANGE);
                out.extend_from_slice(&feed.to_bytes());
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&max.to_be_bytes());
            }
            Request::Push(entries) => {
                out.push(T_PUSH);
                put_entries(&mut out, entries);
            }
            Request::Forks => out.push(T_FORKS),
            Request::Succession(entries) => {
                out.push(T_SUCCESSION);
                put_entries(&mut out, entries);
            }
            Request::Join { token, name, addrs } => {
                // Each field is cut to the decoder's limit: the message always decodes.
                out.push(T_JOIN);
                put_text(&mut out, token, MAX_TOKEN_CHARS);
                put_text(&mut out, name, MAX_JOIN_NAME);
                let addrs = &addrs[..addrs.len().min(MAX_JOIN_ADDRS)];
                out.push(addrs.len() as u8);
                for a in addrs {
                    put_text(&mut out, a, MAX_JOIN_ADDR);
                }
            }
        }
        out
    }

    /// Decodes a message, enforcing every limit.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_size(bytes)?;
        let mut r = Reader(bytes);
        let msg = match r.u8()? {
            T_HEADS => {
                let (after, until) = (r.bound()?, r.bound()?);
                if let (Some(a), Some(u)) = (after, until)
                    && a >= u
                {
                    return Err(WireError::Malformed(
                        "a heads page that ends before it starts",
                    ));
                }
                Request::Heads(HeadsPage {
                    after,
                    until,
                    heads: r.heads_of(after, until)?,
                })
            }
            T_DIGEST => {
                let mut d = [0u8; 32];
                d.copy_from_slice(r.take(32)?);
                Request::Digest(Hash32(d))
            }
            T_RANGE => Request::Range {
                feed: r.feed()?,
                from: r.u64()?,
                max: r.u32()?,
            },
            T_PUSH => Request::Push(r.entries()?),
            T_FORKS => Request::Forks,
            T_SUCCESSION => Request::Succession(r.entries()?),
            T_JOIN => {
                let token = r.text(MAX_TOKEN_CHARS, "token")?;
                let name = r.text(MAX_JOIN_NAME, "name")?;
                let n = r.u8()? as usize;
                if n > MAX_JOIN_ADDRS {
                    return Err(WireError::TooLarge(format!(
                        "{n} addresses, limit {MAX_JOIN_ADDRS}"
                    )));
                }
                let addrs = (0..n)
                    .map(|_| r.text(MAX_JOIN_ADDR, "address"))
                    .collect::<Result<_, _>>()?;
                Request::Join { token, name, addrs }
            }
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end()?;
        Ok(msg)
    }
}

impl Response {
    /// Length of [`Response::encode`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Response::Heads { heads, .. } => 2 + 4 + heads.len() * HEAD_LEN,
            Response::InSync | Response::Differ => 1,
            Response::Packed(p) => 1 + 1 + 4 + 4 + 4 + p.body.len(),
            Response::Entries { entries, .. } => 2 + entries_len(entries),
            Response::Ack { .. } => 5,
            Response::Joined { .. } => 2,
            Response::Forks(p) => 1 + 4 + p.len() * FORK_PROOF_LEN,
            Response::Error { message, .. } => 5 + message.len().min(MAX_ERROR_TEXT),
        }
    }

    /// The message bytes (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Response::Heads { heads, more } => {
                out.push(T_R_HEADS);
                out.push(u8::from(*more));
                put_heads(&mut out, heads);
            }
            Response::InSync => out.push(T_R_IN_SYNC),
            Response::Differ => out.push(T_R_DIFFER),
            Response::Packed(p) => {
                out.push(T_R_PACKED);
                out.push(u8::from(p.more));
                out.extend_from_slice(&p.count.to_be_bytes());
                out.extend_from_slice(&p.raw_len.to_be_bytes());
                out.extend_from_slice(&(p.body.len() as u32).to_be_bytes());
                out.extend_from_slice(&p.body);
            }
            Response::Entries { entries, more } => {
                out.push(T_R_ENTRIES);
                out.push(u8::from(*more));
                put_entries(&mut out, entries);
            }
            Response::Ack { stored } => {
                out.push(T_R_ACK);
                out.extend_from_slice(&stored.to_be_bytes());
            }
            Response::Joined { waiting } => {
                out.push(T_R_JOINED);
                out.push(u8::from(*waiting));
            }
            Response::Forks(proofs) => {
                out.push(T_R_FORKS);
                out.extend_from_slice(&(proofs.len() as u32).to_be_bytes());
                for p in proofs {
                    out.extend_from_slice(&p.encode());
                }
            }
            Response::Error { code, message } => {
                out.push(T_R_ERROR);
                out.extend_from_slice(&code.to_be_bytes());
                let mut text = message.as_bytes();
                if text.len() > MAX_ERROR_TEXT {
                    let mut cut = MAX_ERROR_TEXT;
                    while !message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text = &text[..cut];
                }
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text);
            }
        }
        out
    }

    /// Decodes a message, enforcing every limit.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_size(bytes)?;
        let mut r = Reader(bytes);
        let msg = match r.u8()? {
            T_R_HEADS => Response::Heads {
                more: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("bad `more` flag")),
                },
                heads: r.heads_of(None, None)?,
            },
            T_R_IN_SYNC => Response::InSync,
            T_R_DIFFER => Response::Differ,
            T_R_PACKED => {
                let more = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("bad `more` flag")),
                };
                let (count, raw_len) = (r.u32()?, r.u32()?);
                if count as usize > MAX_BATCH_ENTRIES {
                    return Err(WireError::TooLarge(format!(
                        "{count} entries, limit {MAX_BATCH_ENTRIES}"
                    )));
                }
                if raw_len as usize > MAX_FRAME_BYTES {
                    return Err(WireError::TooLarge(format!(
                        "{raw_len} bytes unpacked, limit {MAX_FRAME_BYTES}"
                    )));
                }
                let len = r.u32()? as usize;
                Response::Packed(Packed {
                    more,
                    count,
                    raw_len,
                    body: r.take(len)?.to_vec(),
                    unpacked: None,
                })
            }
            T_R_ENTRIES => {
                let more = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("bad `more` flag")),
                };
                Response::Entries {
                    entries: r.entries()?,
                    more,
                }
            }
            T_R_ACK => Response::Ack { stored: r.u32()? },
            T_R_FORKS => {
                let n = r.u32()? as usize;
                if n > MAX_FORK_PROOFS {
                    return Err(WireError::TooLarge(format!(
                        "{n} fork proofs, limit {MAX_FORK_PROOFS}"
                    )));
                }
                let proofs = (0..n)
                    .map(|_| {
                        ForkProof::decode(r.take(FORK_PROOF_LEN)?)
                            .map_err(|_| WireError::Malformed("bad fork proof"))
                    })
                    .collect::<Result<_, _>>()?;
                Response::Forks(proofs)
            }
            T_R_JOINED => Response::Joined {
                waiting: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("bad `waiting` flag")),
                },
            },
            T_R_ERROR => {
                let code = r.u16()?;
                let len = r.u16()? as usize;
                if len > MAX_ERROR_TEXT {
                    return Err(WireError::TooLarge("error text".into()));
                }
                let message = String::from_utf8_lossy(r.take(len)?).into_owned();
                Response::Error { code, message }
            }
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end()?;
        Ok(msg)
    }
}

/// The digest of a heads list as [`Request::Digest`] carries it: SHA-256 of the domain
/// `intercity/heads/1`, then for each head in the order given (feed order, as heads lists
/// are sent) its feed id (49), seq (u64 BE), hash (32) and the lowest seq at which this node
/// holds a proof that the feed forked (u64 BE, 0 for none). Two nodes holding the same heads
/// and the same fork knowledge for the feeds they share compute the same digest.
pub fn heads_digest(heads: &[Head], fork_seq: impl Fn(&FeedId) -> Option<u64>) -> Hash32 {
    let mut h = Sha256::new();
    h.update(b"intercity/heads/1");
    for (feed, seq, hash) in heads {
        h.update(feed.to_bytes());
        h.update(seq.to_be_bytes());
        h.update(hash.0);
        h.update(fork_seq(feed).unwrap_or(0).to_be_bytes());
    }
    Hash32(h.finalize().into())
}

/// Entries of a range as [`Response::Packed`] carries them: `count` entries whose packed body
/// (protocol.md §12.4) is `raw_len` bytes before zstd compression. Two are equal when their
/// wire bytes are (whether either was unpacked already does not count).
#[derive(Clone, Debug)]
pub struct Packed {
    /// True if more entries follow the last one sent.
    pub more: bool,
    /// How many entries.
    pub count: u32,
    /// The body's length before compression (at most [`MAX_FRAME_BYTES`]).
    pub raw_len: u32,
    /// The zstd-compressed body.
    pub body: Vec<u8>,
    /// The entries, once [`Packed::prepare`] unpacked them (not on the wire): the node's codec
    /// unpacks in the connection's task, off the event loop that then reads them.
    pub unpacked: Option<Result<Vec<WireEntry>, WireError>>,
}

impl PartialEq for Packed {
    fn eq(&self, other: &Packed) -> bool {
        (self.more, self.count, self.raw_len, &self.body)
            == (other.more, other.count, other.raw_len, &other.body)
    }
}

impl Eq for Packed {}

/// zstd level of packed range answers: most of the ratio of higher levels at a fraction of
/// their time (an answer is packed on the responder's reading thread).
const PACK_LEVEL: i32 = 1;
/// Entry fields that a packed entry derived from the previous one carries: doc id, timestamp,
/// signature (protocol.md §3, §4).
const DERIVED_LEN: usize = 16 + 8 + 64;

/// Whether `entry` (with `payload`) follows `prev` in one feed so that its header can be
/// rebuilt from `prev`, its doc id, timestamp and payload ([`derive`]): the same bytes, or
/// it goes whole (a store whose payload no longer matches its entry must not turn an entry the
/// receiver refuses for its payload into one whose signature fails).
fn derivable(prev: &[u8], entry: &[u8], payload: &[u8]) -> bool {
    let seq = |e: &[u8]| e.get(50..58).and_then(|b| <[u8; 8]>::try_from(b).ok());
    let next = seq(prev)
        .map(u64::from_be_bytes)
        .and_then(|s| s.checked_add(1))
        .map(u64::to_be_bytes);
    let len = u32::try_from(payload.len()).ok().map(u32::to_be_bytes);
    prev.len() == SIGNED_ENTRY_LEN
        && entry.len() == SIGNED_ENTRY_LEN
        && prev[..50] == entry[..50]
        && next.is_some()
        && next == seq(entry)
        && len.is_some_and(|l| entry[138..142] == l)
        && entry[58..90] == Hash32::of(prev).0
        && entry[106..138] == Hash32::of(payload).0
}

/// The signed entry after `prev` in its feed with this doc id, timestamp, signature and
/// payload: same version, author and scope; seq + 1; prev = `prev`'s entry hash; the payload's
/// hash and length.
fn derive(
    prev: &[u8],
    doc: &[u8],
    timestamp: &[u8],
    signature: &[u8],
    payload: &[u8],
) -> Option<[u8; SIGNED_ENTRY_LEN]> {
    let seq = u64::from_be_bytes(prev.get(50..58)?.try_into().ok()?).checked_add(1)?;
    let mut e = [0u8; SIGNED_ENTRY_LEN];
    e[..50].copy_from_slice(prev.get(..50)?);
    e[50..58].copy_from_slice(&seq.to_be_bytes());
    e[58..90].copy_from_slice(&Hash32::of(prev).0);
    e[90..106].copy_from_slice(doc);
    e[106..138].copy_from_slice(&Hash32::of(payload).0);
    e[138..142].copy_from_slice(&u32::try_from(payload.len()).ok()?.to_be_bytes());
    e[142..150].copy_from_slice(timestamp);
    e[150..].copy_from_slice(signature);
    Some(e)
}

/// Packs the entries of a range answer (protocol.md §12.4): an entry that follows the one
/// before it in its feed is sent without what the receiver rebuilds (version, author, scope,
/// seq, prev, payload hash and length), and the whole is compressed with zstd.
pub fn pack(entries: &[WireEntry], more: bool) -> Response {
    let mut raw = Vec::new();
    let mut prev: &[u8] = &[];
    for e in entries {
        if derivable(prev, &e.entry, &e.payload) {
            raw.push(1);
            raw.extend_from_slice(&e.entry[90..106]);
            raw.extend_from_slice(&e.entry[142..]);
        } else {
            raw.push(0);
            raw.extend_from_slice(&e.entry);
        }
        raw.extend_from_slice(&(e.payload.len() as u32).to_be_bytes());
        raw.extend_from_slice(&e.payload);
        prev = &e.entry;
    }
    match (
        zstd::bulk::compress(&raw, PACK_LEVEL),
        u32::try_from(raw.len()),
    ) {
        (Ok(body), Ok(raw_len)) if raw.len() <= MAX_FRAME_BYTES => Response::Packed(Packed {
            more,
            count: entries.len() as u32,
            raw_len,
            body,
            unpacked: None,
        }),
        // (zstd does not fail on memory it has; an answer over the frame limit goes as it is
        // and is refused by the receiver's decoder, as before.)
        _ => Response::Entries {
            entries: entries.to_vec(),
            more,
        },
    }
}

impl Packed {
    /// Unpacks now ([`Packed::unpack`]), checks the entries' signatures as a batch and reads
    /// ahead the payloads of authors `reads` ([`check_and_prepare`]), keeping the outcome for
    /// [`Packed::into_entries`].
    pub fn prepare(&mut self, reads: impl Fn(&crate::identity::CityId) -> bool) {
        if self.unpacked.is_none() {
            let mut unpacked = self.unpack_marked();
            if let Ok((entries, rebuilt)) = &mut unpacked {
                check_and_prepare_rebuilt(entries, rebuilt, reads);
            }
            self.unpacked = Some(unpacked.map(|(entries, _)| entries));
        }
    }

    /// The entries: unpacked by [`Packed::prepare`] already, or now.
    pub fn into_entries(self) -> Result<Vec<WireEntry>, WireError> {
        match self.unpacked {
            Some(done) => done,
            None => self.unpack(),
        }
    }

    /// The entries, rebuilt; an error if the body does not decompress to `raw_len` bytes of
    /// `count` well-formed entries (the first one whole), each payload within
    /// [`MAX_PAYLOAD_BYTES`]. A rebuilt entry whose sender lied about it fails its signature
    /// check like any other.
    pub fn unpack(&self) -> Result<Vec<WireEntry>, WireError> {
        self.unpack_marked().map(|(entries, _)| entries)
    }

    /// [`Packed::unpack`], and for each entry whether it was rebuilt from the one before (its
    /// payload hash computed here from its payload).
    fn unpack_marked(&self) -> Result<(Vec<WireEntry>, Vec<bool>), WireError> {
        let raw = zstd::bulk::decompress(&self.body, self.raw_len as usize)
            .map_err(|_| WireError::Malformed("packed entries do not decompress"))?;
        if raw.len() != self.raw_len as usize {
            return Err(WireError::Malformed("packed entries of another length"));
        }
        let mut r = Reader(&raw);
        let mut out: Vec<WireEntry> = Vec::with_capacity(self.count as usize);
        let mut rebuilt = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            let flag = r.u8()?;
            let head = match flag {
                0 => r.take(SIGNED_ENTRY_LEN)?,
                1 => r.take(DERIVED_LEN)?,
                _ => return Err(WireError::Malformed("bad packed entry flag")),
            };
            let payload = r.payload()?;
            let entry = if flag == 0 {
                head.to_vec()
            } else {
                let prev = out.last().ok_or(WireError::Malformed(
                    "a packed range starts with a derived entry",
                ))?;
                derive(
                    &prev.entry,
                    &head[..16],
                    &head[16..24],
                    &head[24..],
                    &payload,
                )
                .ok_or(WireError::Malformed("a derived entry after the last seq"))?
                .to_vec()
            };
            out.push(WireEntry {
                entry,
                payload,
                checked: None,
            });
            rebuilt.push(flag == 1);
        }
        r.end()?;
        Ok((out, rebuilt))
    }
}

/// A range of one feed to fetch from a peer: seqs `from..=to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// The feed.
    pub feed: FeedId,
    /// First seq missing here.
    pub from: u64,
    /// The peer's head.
    pub to: u64,
}

/// Compares heads: what to ask the peer for, in feed order. Where it is ahead, the entries
/// after ours; where it is at our seq with another hash (its author signed two entries at that
/// seq), its entry at that seq, which proves the fork. Feeds we hold closed are skipped by the
/// caller (it passes them as `u64::MAX`).
pub fn wants(mine: &BTreeMap<FeedId, (u64, Hash32)>, theirs: &[Head]) -> Vec<Want> {
    let mut out: Vec<Want> = theirs
        .iter()
        .filter_map(|&(feed, their, their_hash)| {
            let (have, hash) = mine.get(&feed).copied().unwrap_or_default();
            if have == u64::MAX {
                return None;
            }
            if their > have {
                return Some(Want {
                    feed,
                    from: have + 1,
                    to: their,
                });
            }
            (their == have && have > 0 && their_hash != hash).then_some(Want {
                feed,
                from: have,
                to: their,
            })
        })
        .collect();
    out.sort_by_key(|w| w.feed);
    out.dedup_by_key(|w| w.feed);
    out
}

/// Per scope, how many entries we are behind (they have, we don't) and ahead (we have, they
/// don't) of a peer: the numbers behind "am I up to date with Brno?".
pub fn lag(mine: &BTreeMap<FeedId, u64>, theirs: &[Head]) -> BTreeMap<Scope, (u64, u64)> {
    let mut out: BTreeMap<Scope, (u64, u64)> = BTreeMap::new();
    let theirs: BTreeMap<FeedId, u64> = theirs.iter().map(|&(f, s, _)| (f, s)).collect();
    for (feed, &their) in &theirs {
        let have = mine.get(feed).copied().unwrap_or(0);
        let e = out.entry(feed.scope).or_default();
        // Saturating: a peer may claim a feed at u64::MAX.
        e.0 = e.0.saturating_add(their.saturating_sub(have));
        e.1 = e.1.saturating_add(have.saturating_sub(their));
    }
    for (feed, &have) in mine {
        if !theirs.contains_key(feed) {
            let e = out.entry(feed.scope).or_default();
            e.1 = e.1.saturating_add(have);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::DocId;
    use crate::identity::CityId;
    use proptest::prelude::*;

    fn feed(n: u8, g: Option<u8>) -> FeedId {
        FeedId {
            author: CityId::from_bytes([n; 32]),
            scope: g.map_or(Scope::Federation, |g| Scope::Group(DocId([g; 16]))),
        }
    }

    #[test]
    fn messages_round_trip() {
        let e = WireEntry {
            entry: vec![7; SIGNED_ENTRY_LEN],
            payload: vec![1, 2, 3],
            checked: None,
        };
        let reqs = [
            Request::Heads(HeadsPage::whole(vec![
                (feed(1, None), 5, Hash32([1; 32])),
                (feed(2, Some(9)), 1, Hash32([2; 32])),
            ])),
            Request::Heads(HeadsPage {
                after: Some(feed(1, None)),
                until: Some(feed(3, None)),
                heads: vec![(feed(2, Some(9)), 1, Hash32([2; 32]))],
            }),
            Request::Heads(HeadsPage {
                after: Some(feed(1, None)),
                until: None,
                heads: Vec::new(),
            }),
            Request::Range {
                feed: feed(3, None),
                from: 4,
                max: 100,
            },
            Request::Push(vec![e.clone(), e.clone()]),
            Request::Forks,
            Request::Digest(Hash32([4; 32])),
            Request::Succession(vec![e.clone()]),
            Request::Join {
                token: "ic1abc".into(),
                name: "Brno".into(),
                addrs: vec!["/ip4/127.0.0.1/tcp/4001".into(), "/ip6/::1/tcp/1".into()],
            },
        ];
        for r in reqs {
            assert_eq!(r.encoded_len(), r.encode().len());
            assert_eq!(Request::decode(&r.encode()).expect("decodes"), r);
        }
        let resps = [
            Response::Heads {
                heads: vec![(feed(1, None), 5, Hash32([3; 32]))],
                more: false,
            },
            Response::Heads {
                heads: vec![
                    (feed(1, None), 5, Hash32([3; 32])),
                    (feed(2, None), 1, Hash32([3; 32])),
                ],
                more: true,
            },
            Response::Entries {
                entries: vec![e],
                more: true,
            },
            Response::Ack { stored: 3 },
            Response::InSync,
            Response::Differ,
            Response::Forks(Vec::new()),
            Response::Joined { waiting: true },
            Response::Joined { waiting: false },
            Response::Error {
                code: 1,
                message: "not in roster".into(),
            },
        ];
        for r in resps {
            assert_eq!(r.encoded_len(), r.encode().len());
            assert_eq!(Response::decode(&r.encode()).expect("decodes"), r);
        }
    }

    #[test]
    fn the_heads_digest_covers_every_head_and_fork() {
        let heads = vec![
            (feed(1, None), 5, Hash32([1; 32])),
            (feed(2, Some(9)), 1, Hash32([2; 32])),
        ];
        let none = |_: &FeedId| None;
        let d = heads_digest(&heads, none);
        assert_eq!(d, heads_digest(&heads.clone(), none), "deterministic");
        let mut other = heads.clone();
        other[1].1 = 2;
        assert_ne!(d, heads_digest(&other, none), "a seq");
        other[1] = (feed(2, Some(9)), 1, Hash32([3; 32]));
        assert_ne!(d, heads_digest(&other, none), "a hash");
        assert_ne!(d, heads_digest(&heads[..1], none), "a feed fewer");
        assert_ne!(d, heads_digest(&heads, |_| Some(3)), "a fork known");
        // Truncated or overlong digests do not decode.
        assert!(Request::decode(&[T_DIGEST, 1, 2]).is_err());
        let mut long = Request::Digest(d).encode();
        long.push(0);
        assert!(Request::decode(&long).is_err());
    }

    /// A chain of `n` entries of one feed, each with a payload of some repeated text.
    fn chain(n: u64, from: u64) -> Vec<WireEntry> {
        let key = crate::identity::CityKey::from_secret([5; 32]);
        let mut prev = Hash32::default();
        let mut out = Vec::new();
        for seq in 1..from + n {
            let payload =
                format!("change {seq}: the civic crowdfunding platform of Milan").into_bytes();
            let e = crate::entry::sign_entry(
                &key,
                Scope::Federation,
                seq,
                prev,
                DocId([seq as u8; 16]),
                &payload,
                1_700_000_000_000 + seq as i64,
            );
            prev = e.hash();
            if seq >= from {
                out.push(WireEntry {
                    entry: e.encode().to_vec(),
                    payload,
                    checked: None,
                });
            }
        }
        out
    }

    /// A range answer whose first entry claims the last seq there is: the next one cannot follow
    /// it, and finding that out must not overflow (a debug build panicked on the network's
    /// thread). Only the first is checked in the batch.
    #[test]
    fn an_entry_at_the_last_seq_is_followed_by_nothing() {
        let key = crate::identity::CityKey::from_secret([5; 32]);
        let wire = |seq: u64| {
            let payload = b"change".to_vec();
            let prev = Hash32([u8::from(seq > 1); 32]);
            let e = crate::entry::sign_entry(
                &key,
                Scope::Federation,
                seq,
                prev,
                DocId([7; 16]),
                &payload,
                1_700_000_000_000,
            );
            WireEntry {
                entry: e.encode().to_vec(),
                payload,
                checked: None,
            }
        };
        let mut entries = vec![wire(u64::MAX), wire(1)];
        check_signatures(&mut entries);
        let checked: Vec<bool> = entries.iter().map(|w| w.checked.is_some()).collect();
        assert_eq!(checked, [true, false]);
    }

    fn unpacked(r: &Response) -> Result<Vec<WireEntry>, WireError> {
        match Response::decode(&r.encode())? {
            Response::Packed(p) => p.unpack(),
            other => panic!("not packed: {other:?}"),
        }
    }

    #[test]
    fn a_packed_range_rebuilds_every_entry_byte_for_byte() {
        // A range from seq 5 (its first entry's prev is not in the answer), then another feed's
        // entry and one out of order: those go whole.
        let mut entries = chain(40, 5);
        let other = chain(1, 1);
        entries.insert(20, other[0].clone());
        entries.swap(30, 31);
        let packed = pack(&entries, true);
        assert!(matches!(&packed, Response::Packed(p) if p.more && p.count == 41));
        assert_eq!(unpacked(&packed).expect("unpacks"), entries);
        for e in unpacked(&packed).expect("unpacks") {
            crate::entry::SignedEntry::decode(&e.entry)
                .expect("decodes")
                .verify()
                .expect("still signed");
        }
        let plain = Response::Entries {
            entries: entries.clone(),
            more: true,
        };
        assert!(
            packed.encoded_len() * 2 < plain.encoded_len(),
            "{} packed against {} bytes",
            packed.encoded_len(),
            plain.encoded_len()
        );
        assert_eq!(packed.encoded_len(), packed.encode().len());
        assert_eq!(unpacked(&pack(&[], false)).expect("empty"), Vec::new());
    }

    #[test]
    fn a_prepared_range_is_checked_as_one_batch_and_only_for_its_bytes() {
        use crate::ingest::{IngestError, memory::MemLedger};
        let entries = chain(20, 1);
        let Response::Packed(mut packed) = pack(&entries, false) else {
            panic!("not packed")
        };
        packed.prepare(|_| true);
        let prepared = packed.into_entries().expect("unpacks");
        assert!(
            prepared
                .iter()
                .all(|w| w.checked.as_ref().is_some_and(|c| c.covers(&w.entry)))
        );
        // Only the leading run of one feed, seq after seq: not another feed's entry after it,
        // nor what follows a gap.
        let mut mixed = chain(5, 1);
        mixed.push(chain(1, 1)[0].clone());
        mixed[5].entry[1] ^= 1; // another author (the signature no longer matters)
        let mut gap = chain(8, 1);
        gap.remove(5);
        for (mut answer, run) in [(mixed, 5), (gap, 5)] {
            check_signatures(&mut answer);
            let marked: Vec<bool> = answer.iter().map(|w| w.checked.is_some()).collect();
            assert_eq!(marked.iter().filter(|m| **m).count(), run, "{marked:?}");
            assert!(marked[..run].iter().all(|m| *m));
        }
        // One signature broken: nothing is marked, and the pipeline refuses that entry alone.
        let mut broken = entries.clone();
        broken[7].entry[200] ^= 1;
        check_signatures(&mut broken);
        assert!(broken.iter().all(|w| w.checked.is_none()));
        // (The chain's payloads are not Automerge changes: an entry whose signature passes
        // fails later, on its change.)
        let ledger = MemLedger::default();
        let judged = |w: &WireEntry, checked: Option<&Checked>| {
            let mut checked = checked.cloned();
            crate::ingest::ingest_checked(&ledger, &w.entry, &w.payload, checked.as_mut())
                .map(|_| ())
        };
        assert!(matches!(
            judged(&broken[0], None),
            Err(IngestError::BadChange(_))
        ));
        assert!(matches!(
            judged(&broken[7], None),
            Err(IngestError::Entry(_))
        ));
        assert!(matches!(
            judged(&prepared[0], prepared[0].checked.as_ref()),
            Err(IngestError::BadChange(_))
        ));
        // A token vouches for its own bytes only: on other bytes, the signature is checked.
        let mut forged = prepared[0].clone();
        forged.entry[200] ^= 1;
        assert!(matches!(
            judged(&forged, prepared[0].checked.as_ref()),
            Err(IngestError::Entry(_))
        ));
    }

    /// A practice created by `key` as the first entry of its federation feed.
    fn created(key: &crate::identity::CityKey, title: &str) -> WireEntry {
        let actor = automerge::ActorId::from(key.id().as_bytes().to_vec());
        let mut p = crate::record::Practice::new(key.id().to_string(), title, "en");
        p.city = "Milan".into();
        let record = crate::record::Record::from(p);
        let change = crate::doc::new_plain_change(actor, &record, "create").expect("change");
        let payload = change.raw_bytes().to_vec();
        let doc = DocId::for_genesis(&change.hash());
        let entry = crate::entry::sign_entry(
            key,
            Scope::Federation,
            1,
            Hash32::default(),
            doc,
            &payload,
            0,
        );
        WireEntry {
            entry: entry.encode().to_vec(),
            payload,
            checked: None,
        }
    }

    /// An entry rebuilt from a packed answer is read ahead without hashing its payload again
    /// (`derive` just did): only those are, so what is read ahead of each entry is what
    /// `prepare` reads of it, a whole entry whose payload is not the one it signs included.
    #[test]
    fn entries_rebuilt_from_a_packed_answer_are_read_ahead_as_prepare_reads_them() {
        let milan = crate::identity::CityKey::from_secret([1; 32]);
        let actor = automerge::ActorId::from(milan.id().as_bytes().to_vec());
        let change = |n: u64| {
            let mut p = crate::record::Practice::new(milan.id().to_string(), "Repair cafe", "en");
            p.city = "Milan".into();
            p.summary = format!("Practice {n}");
            let record = crate::record::Record::from(p);
            crate::doc::new_plain_change(actor.clone(), &record, "create").expect("change")
        };
        let mut entries = Vec::new();
        let mut prev = Hash32::default();
        for seq in 1..=6u64 {
            let change = change(seq);
            let payload = change.raw_bytes().to_vec();
            let doc = DocId::for_genesis(&change.hash());
            let entry = crate::entry::sign_entry(
                &milan,
                Scope::Federation,
                seq,
                prev,
                doc,
                &payload,
                seq as i64,
            );
            prev = entry.hash();
            entries.push(WireEntry {
                entry: entry.encode().to_vec(),
                payload,
                checked: None,
            });
        }
        // The third payload is a change of the same author and length, but not the one its
        // entry signs: it goes whole, is not read ahead, and the fourth is rebuilt from it.
        entries[2].payload = change(9).raw_bytes().to_vec();
        assert_eq!(entries[2].payload.len(), entries[3].payload.len());
        let Response::Packed(mut packed) = pack(&entries, false) else {
            panic!("not packed")
        };
        let (_, rebuilt) = packed.unpack_marked().expect("unpack");
        assert_eq!(rebuilt, [false, true, false, true, true, true]);
        packed.prepare(|_| true);
        let got = packed.into_entries().expect("entries");
        assert_eq!(got.len(), entries.len());
        for (k, (w, sent)) in got.iter().zip(&entries).enumerate() {
            assert_eq!((&w.entry, &w.payload), (&sent.entry, &sent.payload));
            let e = crate::entry::SignedEntry::decode(&w.entry).expect("entry");
            let read = crate::ingest::prepare(&e, &w.payload);
            let ahead = w.checked.as_ref().and_then(|c| c.prepared.as_deref());
            assert_eq!(
                format!("{ahead:?}"),
                format!("{:?}", read.as_ref()),
                "entry {k}"
            );
            assert_eq!(ahead.is_none(), k == 2, "entry {k}");
        }
    }

    #[test]
    fn a_payload_read_ahead_counts_only_for_the_author_and_payload_it_was_read_for() {
        use crate::identity::CityKey;
        use crate::ingest::{Verdict, memory::MemLedger};
        let milan = CityKey::from_secret([1; 32]);
        let brno = CityKey::from_secret([2; 32]);
        let mut wires = [
            created(&milan, "Makerspace"),
            created(&milan, "Repair cafe"),
            created(&brno, "Repair cafe"),
        ];
        // Only the authors the node reads ahead for.
        let mut other = wires[2].clone();
        check_and_prepare(std::slice::from_mut(&mut other), |a| *a == milan.id());
        assert!(other.checked.as_ref().is_some_and(|c| !c.is_prepared()));
        for w in &mut wires {
            check_and_prepare(std::slice::from_mut(w), |_| true);
            assert!(w.checked.as_ref().is_some_and(Checked::is_prepared));
        }
        let read = |l: &MemLedger| -> Vec<serde_json::Value> {
            l.docs
                .values()
                .map(|d| crate::doc::to_json(d, None))
                .collect()
        };
        let mut plain = MemLedger::default();
        assert!(matches!(
            plain.ingest(&wires[0].entry, &wires[0].payload),
            Ok(Verdict::Stored(_))
        ));
        // Milan's entry, vouched for by a token that carries what was read of another payload
        // (Milan's, then Brno's): the pipeline reads its own payload.
        for other in [&wires[1], &wires[2]] {
            let mut token = wires[0].checked.clone().expect("checked");
            token.prepared = other.checked.as_ref().and_then(|c| c.prepared.clone());
            let mut l = MemLedger::default();
            let verdict = l.ingest_checked(&wires[0].entry, &wires[0].payload, Some(&mut token));
            assert!(matches!(verdict, Ok(Verdict::Stored(_))), "{verdict:?}");
            assert_eq!(read(&l), read(&plain));
        }
    }

    #[test]
    fn packed_bytes_that_lie_do_not_unpack() {
        let Response::Packed(good) = pack(&chain(3, 1), false) else {
            panic!("packed")
        };
        // More bytes than announced (a bomb stops at the announced size), fewer, or another
        // count.
        let small = Packed {
            raw_len: good.raw_len - 1,
            ..good.clone()
        };
        assert!(small.unpack().is_err());
        let large = Packed {
            raw_len: good.raw_len + 1,
            ..good.clone()
        };
        assert!(large.unpack().is_err());
        for count in [2, 4] {
            assert!(
                Packed {
                    count,
                    ..good.clone()
                }
                .unpack()
                .is_err(),
                "{count}"
            );
        }
        // A first entry that claims to follow one before it.
        let raw = [vec![1u8], vec![0; DERIVED_LEN], vec![0, 0, 0, 0]].concat();
        let lie = Packed {
            more: false,
            count: 1,
            raw_len: raw.len() as u32,
            body: zstd::bulk::compress(&raw, 1).expect("zstd"),
            unpacked: None,
        };
        assert!(lie.unpack().is_err());
        // Unpacked ahead (as the node's codec does) or on demand: the same entries.
        let Response::Packed(mut ahead) =
            Response::decode(&pack(&chain(3, 1), false).encode()).expect("decodes")
        else {
            panic!("packed")
        };
        ahead.prepare(|_| true);
        assert_eq!(ahead.into_entries(), good.into_entries());
        // Announced sizes past the limits do not decode.
        let mut b = vec![T_R_PACKED, 0];
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(Response::decode(&b), Err(WireError::TooLarge(_))));
        let mut b = vec![T_R_PACKED, 0];
        b.extend_from_slice(&((MAX_BATCH_ENTRIES + 1) as u32).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(Response::decode(&b), Err(WireError::TooLarge(_))));
    }

    #[test]
    fn limits_are_enforced() {
        let mut b = vec![T_PUSH];
        b.extend_from_slice(&((MAX_BATCH_ENTRIES + 1) as u32).to_be_bytes());
        assert!(matches!(Request::decode(&b), Err(WireError::TooLarge(_))));
        let mut b = vec![T_HEADS, 0, 0];
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(Request::decode(&b), Err(WireError::TooLarge(_))));
        let mut b = vec![T_R_HEADS, 0];
        b.extend_from_slice(&((MAX_HEADS + 1) as u32).to_be_bytes());
        assert!(matches!(Response::decode(&b), Err(WireError::TooLarge(_))));
        let mut b = vec![T_PUSH, 0, 0, 0, 1];
        b.extend_from_slice(&[0; SIGNED_ENTRY_LEN]);
        b.extend_from_slice(&((MAX_PAYLOAD_BYTES + 1) as u32).to_be_bytes());
        assert!(matches!(Request::decode(&b), Err(WireError::TooLarge(_))));
        assert!(matches!(
            Request::decode(&vec![0; MAX_FRAME_BYTES + 1]),
            Err(WireError::TooLarge(_))
        ));
        assert_eq!(Request::decode(&[0x42]), Err(WireError::UnknownTag(0x42)));
        let join = |token: usize, name: usize, addrs: usize| {
            let mut b = vec![T_JOIN];
            for len in [token, name] {
                b.extend_from_slice(&(len as u16).to_be_bytes());
                b.extend(std::iter::repeat_n(b'x', len));
            }
            b.push(addrs as u8);
            for _ in 0..addrs {
                b.extend_from_slice(&[0, 2, b'/', b'a']);
            }
            b
        };
        assert!(Request::decode(&join(MAX_TOKEN_CHARS, MAX_JOIN_NAME, MAX_JOIN_ADDRS)).is_ok());
        for bad in [
            join(MAX_TOKEN_CHARS + 1, 1, 1),
            join(1, MAX_JOIN_NAME + 1, 1),
            join(1, 1, MAX_JOIN_ADDRS + 1),
        ] {
            assert!(matches!(Request::decode(&bad), Err(WireError::TooLarge(_))));
        }
        // The encoder cuts over-long fields (at character boundaries): it always decodes, and
        // `encoded_len` agrees.
        let long = Request::Join {
            token: "t".repeat(MAX_TOKEN_CHARS + 9),
            name: "é".repeat(MAX_JOIN_NAME),
            addrs: vec!["/a".into(); 300],
        };
        assert_eq!(long.encoded_len(), long.encode().len());
        let Ok(Request::Join { token, name, addrs }) = Request::decode(&long.encode()) else {
            panic!("an over-long Join does not decode");
        };
        assert_eq!(
            (token.len(), name.len(), addrs.len()),
            (MAX_TOKEN_CHARS, MAX_JOIN_NAME, MAX_JOIN_ADDRS)
        );
        assert_eq!(
            Response::decode(&[T_R_JOINED, 2]),
            Err(WireError::Malformed("bad `waiting` flag"))
        );
        let mut ok = Request::Heads(HeadsPage::whole(vec![])).encode();
        ok.push(0);
        assert_eq!(
            Request::decode(&ok),
            Err(WireError::Malformed("trailing bytes"))
        );
    }

    #[test]
    fn heads_out_of_order_or_outside_their_page_are_malformed() {
        let h = |n: u8| (feed(n, None), 1, Hash32([n; 32]));
        let page = |after: Option<u8>, until: Option<u8>, heads: Vec<Head>| {
            Request::Heads(HeadsPage {
                after: after.map(|n| feed(n, None)),
                until: until.map(|n| feed(n, None)),
                heads,
            })
            .encode()
        };
        let bad = WireError::Malformed("heads out of feed order or outside their page");
        for bytes in [
            page(None, None, vec![h(2), h(1)]),
            page(None, None, vec![h(2), h(2)]),
            page(Some(2), None, vec![h(2)]),
            page(None, Some(2), vec![h(1), h(3)]),
        ] {
            assert_eq!(Request::decode(&bytes), Err(bad.clone()));
        }
        assert_eq!(
            Request::decode(&page(Some(3), Some(3), vec![])),
            Err(WireError::Malformed(
                "a heads page that ends before it starts"
            ))
        );
        assert!(Request::decode(&page(Some(1), Some(3), vec![h(2), h(3)])).is_ok());
        let mut flag = page(None, None, vec![]);
        flag[1] = 2;
        assert_eq!(
            Request::decode(&flag),
            Err(WireError::Malformed("bad page bound flag"))
        );
        let answer = Response::Heads {
            heads: vec![h(3), h(1)],
            more: false,
        };
        assert_eq!(Response::decode(&answer.encode()), Err(bad));
        let mut more = Response::Heads {
            heads: vec![],
            more: false,
        }
        .encode();
        more[1] = 2;
        assert_eq!(
            Response::decode(&more),
            Err(WireError::Malformed("bad `more` flag"))
        );
    }

    #[test]
    fn a_feed_held_closed_is_never_wanted() {
        // Closed (frozen or exhausted) feeds are passed as u64::MAX: no overflow, no want.
        let mine: BTreeMap<_, _> = [(feed(1, None), (u64::MAX, Hash32::default()))]
            .into_iter()
            .collect();
        let h = Hash32([1; 32]);
        assert!(
            wants(
                &mine,
                &[(feed(1, None), 9, h), (feed(1, None), u64::MAX, h)]
            )
            .is_empty()
        );
    }

    #[test]
    fn lag_saturates_on_claims_at_the_limit() {
        let mine = BTreeMap::new();
        let h = Hash32::default();
        let l = lag(
            &mine,
            &[(feed(1, None), u64::MAX, h), (feed(2, None), u64::MAX, h)],
        );
        assert_eq!(l[&Scope::Federation], (u64::MAX, 0));
    }

    #[test]
    fn wants_and_lag() {
        let (a, b) = (Hash32([1; 32]), Hash32([2; 32]));
        let mine: BTreeMap<_, _> = [
            (feed(1, None), (5, a)),
            (feed(2, None), (2, a)),
            (feed(4, None), (6, a)),
            (feed(5, None), (6, a)),
        ]
        .into_iter()
        .collect();
        let theirs = [
            (feed(1, None), 3, b),
            (feed(2, None), 7, b),
            (feed(3, Some(1)), 2, b),
            (feed(4, None), 6, a),
            (feed(5, None), 6, b),
        ];
        let w = wants(&mine, &theirs);
        assert_eq!(
            w,
            vec![
                Want {
                    feed: feed(2, None),
                    from: 3,
                    to: 7
                },
                Want {
                    feed: feed(3, Some(1)),
                    from: 1,
                    to: 2
                },
                // Same seq, another hash: its entry at that seq shows the fork.
                Want {
                    feed: feed(5, None),
                    from: 6,
                    to: 6
                },
            ]
        );
        let seqs: BTreeMap<_, _> = mine.iter().map(|(f, (s, _))| (*f, *s)).collect();
        let l = lag(&seqs, &theirs);
        assert_eq!(l[&Scope::Federation], (5, 2));
        assert_eq!(l[&Scope::Group(DocId([1; 16]))], (2, 0));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }

        /// Whatever is packed (chains from any seq, cut, reordered, mixed with another feed,
        /// with payloads that do not match their entries, empty payloads) unpacks to the same
        /// bytes.
        #[test]
        fn packing_gives_back_every_byte(
            from in 1u64..4,
            n in 0u64..12,
            picks in proptest::collection::vec((0usize..24, any::<bool>(), 0usize..3), 0..24),
        ) {
            let own = chain(n, from);
            let other = chain(3, 1);
            let mut entries: Vec<WireEntry> = own.clone();
            for (i, from_other, how) in picks {
                let mut e = if from_other {
                    other[i % other.len()].clone()
                } else if own.is_empty() {
                    continue;
                } else {
                    own[i % own.len()].clone()
                };
                match how {
                    0 => {}
                    1 => e.payload.clear(),
                    _ => e.payload.push(b'!'),
                }
                let at = i % (entries.len() + 1);
                entries.insert(at, e);
            }
            let packed = pack(&entries, from > 2);
            prop_assert_eq!(unpacked(&packed).expect("unpacks"), entries);
        }

        /// Random bodies never panic the unpacker, whatever they announce.
        #[test]
        fn unpacking_never_panics(
            raw in proptest::collection::vec(any::<u8>(), 0..1024),
            count in 0u32..600,
            extra in 0u32..3,
        ) {
            let p = Packed {
                more: false,
                count,
                raw_len: raw.len() as u32 + extra,
                body: zstd::bulk::compress(&raw, 1).expect("zstd"),
                unpacked: None,
            };
            let _ = p.unpack();
            let q = Packed { body: raw.clone(), raw_len: raw.len() as u32, ..p };
            let _ = q.unpack();
        }
    }
}
