//! A first look at an Automerge change chunk, before Automerge reads it.
//!
//! automerge 0.12 trusts parts of what it decodes, and some of its work grows with what a chunk
//! *claims* rather than with its size: a compressed chunk is inflated with no bound, and
//! `Change::from_bytes` steps through every operation that the run-length encoded columns
//! describe before anyone can count them (a 127-byte chunk claiming 130 million operations took
//! 12 s). [`check_change`] reads the chunk's header and the run lengths of its operation
//! columns — cheap: one step per run, whatever the run's length — and refuses a chunk before
//! Automerge sees it.
//!
//! Layout (automerge's binary format): magic (4), checksum (4), chunk type (1), body length
//! (LEB128), body. A change body: dependencies (count, 32 bytes each), actor (length, bytes),
//! seq, start op, time, message (length, bytes), other actors (count, each length and bytes),
//! the column metadata (count, then spec and length of each), the columns' data in that order,
//! extra bytes.

/// The chunk type byte of an uncompressed change.
pub const CHANGE_CHUNK: u8 = 1;
/// The chunk type byte of a DEFLATE-compressed change.
pub const COMPRESSED_CHUNK: u8 = 2;
/// The id of the operation columns' action column: one value per operation.
const ACTION_COLUMN: u32 = 4;
/// Other columns may hold a few values per operation (predecessors): at most this many times
/// the operation limit.
const OTHER_COLUMN_FACTOR: u64 = 4;

/// Why a payload is not a change chunk this node reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A compressed change: Automerge would inflate it with no bound.
    #[error("a compressed change; payloads are uncompressed change chunks")]
    Compressed,
    /// Not an Automerge change chunk.
    #[error("not an Automerge change chunk")]
    NotAChange,
    /// The chunk ends before a field it announces.
    #[error("the change chunk ends inside its {0}")]
    Truncated(&'static str),
    /// A column is DEFLATE-compressed (Automerge refuses those in changes too).
    #[error("a compressed column")]
    CompressedColumn,
    /// A column describes more values than the limit.
    #[error("column {column} describes more than {max} values")]
    TooManyValues {
        /// The column's id.
        column: u32,
        /// The limit.
        max: u64,
    },
    /// A string column (map keys, mark names) holds a string over [`MAX_KEY_BYTES`].
    #[error("column {column} holds a string of {len} bytes, over {MAX_KEY_BYTES}")]
    LongString {
        /// The column's id.
        column: u32,
        /// The string's length.
        len: u64,
    },
}

/// Longest string a change's string columns (map keys, mark names) may hold (protocol.md §7).
/// A column stores a string once for a run of operations that use it, and whoever reads the
/// operations one by one (Automerge applying them, a reader of the record) copies it for each:
/// 20,000 maps under one key of 100,000 bytes are a change of 120 KB that read as 2 GB. No
/// record has a key this long: ids are at most 64 ASCII characters, languages 3, and city ids
/// at most this many bytes (`Record::validate`).
pub const MAX_KEY_BYTES: usize = 256;

/// A cursor over a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn uleb(&mut self, what: &'static str) -> Result<u64, ChunkError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or(ChunkError::Truncated(what))?;
            self.at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ChunkError::Truncated(what))
    }

    fn sleb(&mut self, what: &'static str) -> Result<i64, ChunkError> {
        let mut value = 0i64;
        let mut shift = 0;
        loop {
            let b = *self.bytes.get(self.at).ok_or(ChunkError::Truncated(what))?;
            self.at += 1;
            if shift < 64 {
                value |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
            if shift > 70 {
                return Err(ChunkError::Truncated(what));
            }
        }
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], ChunkError> {
        let n = usize::try_from(n).map_err(|_| ChunkError::Truncated(what))?;
        let end = self.at.checked_add(n).ok_or(ChunkError::Truncated(what))?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or(ChunkError::Truncated(what))?;
        self.at = end;
        Ok(out)
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// Checks that `payload` is an uncompressed change chunk whose action column describes at most
/// `max_ops` operations (and each other column at most four times that), without decoding it.
pub fn check_change(payload: &[u8], max_ops: u64) -> Result<(), ChunkError> {
    check_columns(&change_columns(payload)?, max_ops).map(|_| ())
}

/// [`check_change`] of a change's operation columns (spec and data each): the number of
/// operations its action column describes (0 without one).
fn check_columns(columns: &[(u64, &[u8])], max_ops: u64) -> Result<u64, ChunkError> {
    let mut ops = 0;
    for &(spec, data) in columns {
        if spec & 0b1000 != 0 {
            return Err(ChunkError::CompressedColumn);
        }
        let column = u32::try_from(spec >> 4).unwrap_or(u32::MAX);
        let max = if column == ACTION_COLUMN {
            max_ops
        } else {
            max_ops.saturating_mul(OTHER_COLUMN_FACTOR)
        };
        let count = match count_values(spec & 0b111, data, max) {
            Counted::Values(count) => count,
            Counted::TooMany => return Err(ChunkError::TooManyValues { column, max }),
            Counted::LongString(len) => return Err(ChunkError::LongString { column, len }),
        };
        if column == ACTION_COLUMN {
            ops = count;
        }
    }
    Ok(ops)
}

/// The operation columns of the uncompressed change chunk `payload`: each column's spec and
/// data, in the chunk's order.
fn change_columns(payload: &[u8]) -> Result<Vec<(u64, &[u8])>, ChunkError> {
    match payload.get(8) {
        Some(&CHANGE_CHUNK) => {}
        Some(&COMPRESSED_CHUNK) => return Err(ChunkError::Compressed),
        _ => return Err(ChunkError::NotAChange),
    }
    if payload.get(..4) != Some(&MAGIC[..]) {
        return Err(ChunkError::NotAChange);
    }
    let mut r = Reader {
        bytes: payload,
        at: 9,
    };
    let len = r.uleb("length")?;
    let mut body = Reader {
        bytes: r.skip(len, "body")?,
        at: 0,
    };
    let deps = body.uleb("dependencies")?;
    body.skip(deps.saturating_mul(32), "dependencies")?;
    let actor = body.uleb("actor")?;
    body.skip(actor, "actor")?;
    body.uleb("seq")?;
    body.uleb("start op")?;
    body.sleb("time")?;
    let message = body.uleb("message")?;
    body.skip(message, "message")?;
    let others = body.uleb("other actors")?;
    for _ in 0..others {
        let n = body.uleb("other actors")?;
        body.skip(n, "other actors")?;
    }
    let columns = body.uleb("column metadata")?;
    let mut specs = Vec::new();
    for _ in 0..columns {
        let spec = body.uleb("column metadata")?;
        let len = body.uleb("column metadata")?;
        specs.push((spec, len));
    }
    specs
        .into_iter()
        .map(|(spec, len)| Ok((spec, body.skip(len, "column data")?)))
        .collect()
}

/// One operation of a genesis change, as [`genesis_ops`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GenesisOp<'a> {
    /// The object written to: 0 for the root, else the counter of the operation that made it.
    pub obj: u64,
    /// Where in the object.
    pub key: GenesisKey<'a>,
    /// An insert into a list or text (else a write at the key).
    pub insert: bool,
    /// What is written.
    pub action: GenesisAction<'a>,
}

/// The key of a [`GenesisOp`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GenesisKey<'a> {
    /// A map's key.
    Map(&'a str),
    /// The head of a list or text.
    Head,
    /// The list or text element made by the operation with this counter.
    After(u64),
}

/// What a [`GenesisOp`] writes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GenesisAction<'a> {
    /// A string (as the chunk holds it: no copy, the characters of a text are each one).
    PutStr(&'a str),
    /// Any other scalar.
    Put(automerge::ScalarValue),
    /// A new object.
    Make(automerge::ObjType),
}

// The change operation columns (automerge's binary format): spec = id << 4 | type.
const OBJ_ACTOR: u64 = 1;
const OBJ_CTR: u64 = 2;
const KEY_ACTOR: u64 = 1 << 4 | 1;
const KEY_CTR: u64 = 1 << 4 | 3;
const KEY_STR: u64 = 1 << 4 | 5;
const INSERT: u64 = 3 << 4 | 4;
const ACTION: u64 = 4 << 4 | 2;
const VALUE_META: u64 = 5 << 4 | 6;
const VALUE_RAW: u64 = 5 << 4 | 7;
const PRED_GROUP: u64 = 7 << 4;
const PRED_ACTOR: u64 = 7 << 4 | 1;
const PRED_CTR: u64 = 7 << 4 | 3;
const EXPAND: u64 = 9 << 4 | 4;
const MARK_NAME: u64 = 10 << 4 | 5;

/// A genesis change as [`genesis_change`] reads it, without Automerge.
#[derive(Debug)]
pub(crate) struct GenesisChange<'a> {
    /// Its hash, as Automerge computes it: SHA-256 of the chunk type, the body's length and the
    /// body.
    pub hash: automerge::ChangeHash,
    /// Its actor.
    pub actor: &'a [u8],
    /// Its operations, as [`genesis_ops`] reads them.
    pub ops: Vec<GenesisOp<'a>>,
}

/// Reads `payload` as the genesis change of one actor without Automerge: an uncompressed change
/// chunk with no dependencies, seq 1 and start op 1, no other actors, a checksum that is its
/// hash's first four bytes, nothing after its columns, and operations that [`genesis_ops`]
/// reads. `None` for anything else (the caller then decodes with Automerge).
///
/// It takes only what Automerge's encoder writes, in the form it writes it, so that whatever it
/// reads, `Change::from_bytes` accepts and reads the same: every number in minimal LEB128
/// (Automerge's header parser refuses overlong ones), a UTF-8 message, the payload exactly one
/// chunk, only the columns a change of puts and makes has (see [`genesis_ops`]), and objects and
/// elements that earlier operations of the change made. A test checks this on every one-byte
/// change, deletion and insertion of genesis chunks.
///
/// A change of more than `max_ops` operations ([`check_change`]) is declined before its
/// operations are read; one with dependencies, before anything is hashed.
pub(crate) fn genesis_change(payload: &[u8], max_ops: u64) -> Option<GenesisChange<'_>> {
    use sha2::{Digest, Sha256};
    if payload.get(..4)? != MAGIC || *payload.get(8)? != CHANGE_CHUNK {
        return None;
    }
    let mut r = Reader {
        bytes: payload,
        at: 9,
    };
    let len = r.ulebs()?;
    let body = r.skip(len, "body").ok()?;
    if !r.done() {
        return None;
    }
    let mut b = Reader { bytes: body, at: 0 };
    let deps = b.ulebs()?;
    let n = b.ulebs()?;
    let actor = b.skip(n, "actor").ok()?;
    let (seq, start_op) = (b.ulebs()?, b.ulebs()?);
    b.slebs()?;
    let n = b.ulebs()?;
    std::str::from_utf8(b.skip(n, "message").ok()?).ok()?;
    if deps != 0 || seq != 1 || start_op != 1 || b.ulebs()? != 0 {
        return None;
    }
    let mut columns = Vec::new();
    for _ in 0..b.ulebs()? {
        columns.push((b.ulebs()?, b.ulebs()?));
    }
    let mut data = Vec::with_capacity(columns.len());
    for (spec, len) in columns {
        if !CHANGE_COLUMNS.contains(&spec) {
            return None;
        }
        data.push((spec, b.skip(len, "column data").ok()?));
    }
    if !b.done() {
        return None;
    }
    let count = check_columns(&data, max_ops).ok()?;
    // The length is minimal, so these are the bytes Automerge hashes.
    let hash = automerge::ChangeHash(Sha256::digest(&payload[8..]).into());
    if payload[4..8] != hash.0[..4] {
        return None;
    }
    let ops = ops_of(data, count)?;
    Some(GenesisChange { hash, actor, ops })
}

/// The magic bytes that begin every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The columns Automerge's encoder writes for a change of puts and makes without marks: what
/// [`genesis_change`] takes.
const CHANGE_COLUMNS: [u64; 10] = [
    OBJ_ACTOR, OBJ_CTR, KEY_ACTOR, KEY_CTR, KEY_STR, INSERT, ACTION, VALUE_META, VALUE_RAW,
    PRED_GROUP,
];

/// The operations of the change chunk `chunk` (which Automerge has decoded: `Change::from_bytes`
/// accepted it), read straight from its columns, for a change by one actor (every actor index
/// 0) that only makes objects and puts scalars: about ten times cheaper than Automerge's
/// `Change::decode`.
///
/// `None` for anything else, and for any encoding Automerge's own encoder does not write
/// (columns out of order, unknown or compressed; values past a column's operations; values
/// that need more than 63 bits; bytes, counters, timestamps, predecessors, marks): the caller
/// then decodes with Automerge. Where it answers, it reads what Automerge reads (a test
/// compares the two on every operation of random records and on mutated chunks).
pub(crate) fn genesis_ops(chunk: &[u8]) -> Option<Vec<GenesisOp<'_>>> {
    ops_of(change_columns(chunk).ok()?, 0)
}

/// [`genesis_ops`] of a chunk's columns (spec and data each, in the chunk's order), with room
/// for `capacity` operations (what the action column was counted to hold).
fn ops_of(columns: Vec<(u64, &[u8])>, capacity: u64) -> Option<Vec<GenesisOp<'_>>> {
    use automerge::{ObjType, ScalarValue};
    let mut data: [&[u8]; 14] = [&[]; 14];
    let mut last = None;
    for (spec, bytes) in columns {
        // In order, not empty (Automerge's encoder leaves an empty column out), and raw values
        // only after their metadata (Automerge refuses them alone).
        if last.is_some_and(|l| spec <= l)
            || bytes.is_empty()
            || (spec == VALUE_RAW && last != Some(VALUE_META))
        {
            return None;
        }
        last = Some(spec);
        let slot = [
            OBJ_ACTOR, OBJ_CTR, KEY_ACTOR, KEY_CTR, KEY_STR, INSERT, ACTION, VALUE_META, VALUE_RAW,
            PRED_GROUP, PRED_ACTOR, PRED_CTR, EXPAND, MARK_NAME,
        ]
        .iter()
        .position(|s| *s == spec)?;
        data[slot] = bytes;
    }
    let [
        obj_actor,
        obj_ctr,
        key_actor,
        key_ctr,
        key_str,
        insert,
        action,
        meta,
        raw,
        pred_group,
        pred_actor,
        pred_ctr,
        expand,
        mark_name,
    ] = data;
    let mut obj_actor = Runs::new(obj_actor, Reader::ulebs);
    let mut obj_ctr = Runs::new(obj_ctr, Reader::ulebs);
    let mut key_actor = Runs::new(key_actor, Reader::ulebs);
    let mut key_ctr = Deltas::new(key_ctr);
    let mut key_str = Runs::new(key_str, Reader::string);
    let mut insert = Bools::new(insert);
    let mut action = Runs::new(action, Reader::ulebs);
    let mut meta = Runs::new(meta, Reader::ulebs);
    let mut raw = Reader { bytes: raw, at: 0 };
    let mut pred_group = Runs::new(pred_group, Reader::ulebs);
    let mut expand = Bools::new(expand);
    let mut mark_name = Runs::new(mark_name, Reader::string);
    if !(pred_actor.is_empty() && pred_ctr.is_empty()) {
        return None;
    }
    // (A few bytes of run lengths can claim many operations: room for at most 4,096 ahead.)
    let mut ops = Vec::with_capacity(usize::try_from(capacity.min(4_096)).unwrap_or(0));
    while let Some(a) = action.next()? {
        // Objects and elements are those of earlier operations of this change (genesis changes
        // start at op 1), as [`crate::doc::genesis_json`] wants them: Automerge panics on a
        // counter past 32 bits.
        let earlier = |c: u64| c > 0 && c <= ops.len() as u64;
        // A null action: Automerge refuses it.
        let a = a?;
        let obj = match (obj_actor.next()?.flatten(), obj_ctr.next()?.flatten()) {
            (None, None) => 0,
            (Some(0), Some(c)) if earlier(c) => c,
            _ => return None,
        };
        let key = match (
            key_actor.next()?.flatten(),
            key_ctr.next()?.flatten(),
            key_str.next()?.flatten(),
        ) {
            (None, None, Some(k)) => GenesisKey::Map(k),
            (None, Some(0), None) => GenesisKey::Head,
            (Some(0), Some(c), None) if c > 0 && earlier(c.unsigned_abs()) => {
                GenesisKey::After(c.unsigned_abs())
            }
            _ => return None,
        };
        // Automerge wants a value for each operation in both columns.
        let insert = insert.next()??;
        // A string is kept as the chunk's bytes (`Err`); any other value is a scalar.
        let value = match meta.next()?.flatten()? {
            0 => Ok(ScalarValue::Null),
            1 => Ok(ScalarValue::Boolean(false)),
            2 => Ok(ScalarValue::Boolean(true)),
            m => {
                let bytes = raw.skip(m >> 4, "value").ok()?;
                match m & 0b1111 {
                    3 => Ok(ScalarValue::Uint(Reader::whole(bytes, Reader::ulebs)?)),
                    4 => Ok(ScalarValue::Int(Reader::whole(bytes, Reader::slebs)?)),
                    5 => Ok(ScalarValue::F64(f64::from_le_bytes(bytes.try_into().ok()?))),
                    6 => Err(std::str::from_utf8(bytes).ok()?),
                    _ => return None,
                }
            }
        };
        let action = match (a, value) {
            (1, Err(text)) => GenesisAction::PutStr(text),
            (1, Ok(value)) => GenesisAction::Put(value),
            (0, Ok(ScalarValue::Null)) => GenesisAction::Make(ObjType::Map),
            (2, Ok(ScalarValue::Null)) => GenesisAction::Make(ObjType::List),
            (4, Ok(ScalarValue::Null)) => GenesisAction::Make(ObjType::Text),
            _ => return None,
        };
        if pred_group.next()?.flatten()? != 0
            || expand.next()?.unwrap_or(false)
            || mark_name.next()?.flatten().is_some()
        {
            return None;
        }
        ops.push(GenesisOp {
            obj,
            key,
            insert,
            action,
        });
    }
    // Nothing past the last operation, in any column.
    let rest = [
        obj_actor.next()?.is_none(),
        obj_ctr.next()?.is_none(),
        key_actor.next()?.is_none(),
        key_ctr.next()?.is_none(),
        key_str.next()?.is_none(),
        insert.next()?.is_none(),
        meta.next()?.is_none(),
        raw.done(),
        pred_group.next()?.is_none(),
        expand.next()?.is_none(),
        mark_name.next()?.is_none(),
    ];
    rest.iter().all(|done| *done).then_some(ops)
}

impl<'a> Reader<'a> {
    /// One value read by `read` that takes all of `bytes`.
    fn whole<T>(bytes: &'a [u8], read: fn(&mut Reader<'a>) -> Option<T>) -> Option<T> {
        let mut r = Reader { bytes, at: 0 };
        let value = read(&mut r)?;
        r.done().then_some(value)
    }

    /// An unsigned LEB128 number of at most 63 bits, in its shortest encoding (Automerge's
    /// encoder writes no other, and its header parser refuses longer ones).
    fn ulebs(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..63).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                let minimal = shift == 0 || b != 0;
                return (minimal && value >> 63 == 0).then_some(value);
            }
        }
        None
    }

    /// A signed LEB128 number of at most 63 bits, in its shortest encoding (see
    /// [`Reader::ulebs`]): a last byte that only repeats the sign of the one before is refused.
    fn slebs(&mut self) -> Option<i64> {
        let mut value = 0i64;
        let mut before = 0u8;
        for shift in (0..63).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= i64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                let redundant = (b == 0 && before & 0x40 == 0) || (b == 0x7f && before & 0x40 != 0);
                if shift > 0 && redundant {
                    return None;
                }
                if b & 0x40 != 0 && shift + 7 < 64 {
                    value |= -1i64 << (shift + 7);
                }
                return (shift + 7 <= 63).then_some(value);
            }
            before = b;
        }
        None
    }

    /// A string: its length, then its UTF-8 bytes.
    fn string(&mut self) -> Option<&'a str> {
        let n = self.ulebs()?;
        std::str::from_utf8(self.skip(n, "string").ok()?).ok()
    }
}

/// A run-length encoded column, read value by value as Automerge reads it. `next` is `None`
/// for a malformed column, `Some(None)` past its end, `Some(Some(None))` for a null.
struct Runs<'a, T> {
    r: Reader<'a>,
    left: u64,
    literal: bool,
    last: Option<T>,
    read: fn(&mut Reader<'a>) -> Option<T>,
}

impl<'a, T: Copy> Runs<'a, T> {
    fn new(bytes: &'a [u8], read: fn(&mut Reader<'a>) -> Option<T>) -> Self {
        Runs {
            r: Reader { bytes, at: 0 },
            left: 0,
            literal: false,
            last: None,
            read,
        }
    }

    #[allow(clippy::option_option)]
    fn next(&mut self) -> Option<Option<Option<T>>> {
        while self.left == 0 {
            if self.r.done() {
                return Some(None);
            }
            match self.r.slebs()? {
                count if count > 0 => {
                    self.left = count.unsigned_abs();
                    self.last = Some((self.read)(&mut self.r)?);
                    self.literal = false;
                }
                count if count < 0 => {
                    self.left = count.unsigned_abs();
                    self.literal = true;
                }
                _ => {
                    // A run of no nulls: Automerge's encoder never writes one, and its decoder
                    // ends a column on it without a value.
                    self.left = self.r.ulebs().filter(|n| *n > 0)?;
                    self.last = None;
                    self.literal = false;
                }
            }
        }
        self.left -= 1;
        if self.literal {
            Some(Some(Some((self.read)(&mut self.r)?)))
        } else {
            Some(Some(self.last))
        }
    }
}

/// A delta-encoded column: run-length encoded differences, each value the sum so far (nulls
/// leave the sum as it is).
struct Deltas<'a> {
    runs: Runs<'a, i64>,
    sum: i64,
}

impl<'a> Deltas<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Deltas {
            runs: Runs::new(bytes, Reader::slebs),
            sum: 0,
        }
    }

    #[allow(clippy::option_option)]
    fn next(&mut self) -> Option<Option<Option<i64>>> {
        Some(match self.runs.next()? {
            Some(Some(delta)) => {
                self.sum = self.sum.checked_add(delta)?;
                Some(Some(self.sum))
            }
            other => other,
        })
    }
}

/// A boolean column: alternating run lengths, the first of `false`s (only that one may be empty,
/// as Automerge's encoder writes it).
struct Bools<'a> {
    r: Reader<'a>,
    left: u64,
    value: bool,
}

impl<'a> Bools<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Bools {
            r: Reader { bytes, at: 0 },
            left: 0,
            value: true,
        }
    }

    fn next(&mut self) -> Option<Option<bool>> {
        while self.left == 0 {
            if self.r.done() {
                return Some(None);
            }
            let first = self.r.at == 0;
            self.left = self.r.ulebs().filter(|n| *n > 0 || first)?;
            self.value = !self.value;
        }
        self.left -= 1;
        Some(Some(self.value))
    }
}

/// What [`count_values`] found.
enum Counted {
    /// This many values.
    Values(u64),
    /// More than the limit.
    TooMany,
    /// A string of this many bytes, over [`MAX_KEY_BYTES`].
    LongString(u64),
}

/// How many values a column of type `kind` describes, stopping once past `max` or at a string
/// over [`MAX_KEY_BYTES`]. Run-length encoded columns (every type but booleans and raw values)
/// are runs of a signed count: positive, that many copies of the one value that follows;
/// negative, that many literal values; zero, a number of nulls. Booleans are alternating run
/// lengths; raw values (type 7) are bytes whose count the value metadata column gives. A column
/// that ends inside a run is counted as far as it goes (Automerge refuses it later).
fn count_values(kind: u64, data: &[u8], max: u64) -> Counted {
    let mut r = Reader { bytes: data, at: 0 };
    let mut total: u64 = 0;
    let mut long = None;
    // Skips one value of this column's type; false when the column ends inside it, or at a
    // string that is too long.
    let mut value = |r: &mut Reader<'_>| -> bool {
        match kind {
            3 => r.sleb("value").is_ok(),
            5 => match r.uleb("value") {
                Ok(n) if n > MAX_KEY_BYTES as u64 => {
                    long = Some(n);
                    false
                }
                Ok(n) => r.skip(n, "value").is_ok(),
                Err(_) => false,
            },
            _ => r.uleb("value").is_ok(),
        }
    };
    if kind == 7 {
        return Counted::Values(0);
    }
    while !r.done() {
        let run = if kind == 4 {
            r.uleb("run").ok()
        } else {
            match r.sleb("run") {
                Ok(0) => r.uleb("run").ok(),
                Ok(count) => {
                    let n = count.unsigned_abs();
                    let complete = if count > 0 {
                        value(&mut r)
                    } else {
                        (0..n).all(|_| value(&mut r))
                    };
                    complete.then_some(n)
                }
                Err(_) => None,
            }
        };
        let Some(run) = run else { break };
        total = total.saturating_add(run);
        if total > max {
            return Counted::TooMany;
        }
    }
    match long {
        Some(len) => Counted::LongString(len),
        None => Counted::Values(total),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use automerge::legacy::{Key, ObjectId, Op, OpType, SortedVec};
    use automerge::{ActorId, Change, ScalarValue};

    fn change_of(n: usize) -> Change {
        let op = Op {
            action: OpType::Put(ScalarValue::Null),
            obj: ObjectId::Root,
            key: Key::Map("k".into()),
            pred: SortedVec::new(),
            insert: false,
        };
        Change::from(automerge::ExpandedChange {
            operations: vec![op; n],
            actor_id: ActorId::from(vec![1u8; 32]),
            hash: None,
            seq: 1,
            start_op: std::num::NonZeroU64::MIN,
            time: 0,
            message: Some("m".into()),
            deps: vec![automerge::ChangeHash([9; 32])],
            extra_bytes: Vec::new(),
            author: None,
        })
    }

    #[test]
    fn run_lengths_are_counted_without_decoding() {
        let small = change_of(3);
        assert_eq!(check_change(small.raw_bytes(), 3), Ok(()));
        assert!(matches!(
            check_change(small.raw_bytes(), 2),
            Err(ChunkError::TooManyValues { column: 4, .. })
        ));
        // Run-length encoding: 100,000 operations in a few dozen bytes.
        let big = change_of(100_000);
        assert!(
            big.raw_bytes().len() < 200,
            "{} bytes",
            big.raw_bytes().len()
        );
        assert_eq!(check_change(big.raw_bytes(), 100_000), Ok(()));
        assert!(check_change(big.raw_bytes(), 99_999).is_err());
    }

    /// A genesis change of `maps` maps in a list, each with one key of `key_len` bytes: the
    /// key column holds the key once, for a run of `maps` operations.
    fn one_key_in_many_maps(maps: u64, key_len: usize) -> Change {
        use automerge::ObjType;
        use automerge::legacy::{ElementId, OpId};
        let actor = crate::doc::tests::actor(1);
        let op = crate::doc::tests::bare_op;
        let at = |n: u64| OpId::new(n, &actor);
        let mut operations = vec![op(
            ObjectId::Root,
            Key::Map("a".into()),
            false,
            OpType::Make(ObjType::List),
        )];
        for n in 2..maps + 2 {
            let after = if n == 2 {
                ElementId::Head
            } else {
                ElementId::Id(at(n - 1))
            };
            let key = Key::Seq(after);
            operations.push(op(
                ObjectId::Id(at(1)),
                key,
                true,
                OpType::Make(ObjType::Map),
            ));
        }
        let key = Key::Map("k".repeat(key_len).into());
        for n in 2..maps + 2 {
            let put = OpType::Put(ScalarValue::Null);
            operations.push(op(ObjectId::Id(at(n)), key.clone(), false, put));
        }
        crate::doc::tests::genesis_of(operations)
    }

    /// A key over [`MAX_KEY_BYTES`] is refused before anything reads the change: stored once,
    /// it was copied for every map (this change of 104 KB read as 200 MB of JSON, and Automerge
    /// applying it copies the key for each operation too). The genesis reader declines it.
    #[test]
    fn a_key_over_the_bound_is_refused_before_it_is_read() {
        for (len, refused) in [
            (MAX_KEY_BYTES, false),
            (MAX_KEY_BYTES + 1, true),
            (100_000, true),
        ] {
            let change = one_key_in_many_maps(2_000, len);
            let bytes = change.raw_bytes();
            assert!(bytes.len() < len + 16 * 1024, "{}", bytes.len());
            let checked = check_change(bytes, 262_144);
            if refused {
                assert_eq!(
                    checked,
                    Err(ChunkError::LongString {
                        column: 1,
                        len: len as u64
                    })
                );
                assert!(genesis_change(bytes, 262_144).is_none());
            } else {
                assert_eq!(checked, Ok(()));
                assert!(genesis_change(bytes, 262_144).is_some());
            }
        }
    }

    proptest::proptest! {
        /// The bound on a key decides alone: any number of maps under a key of any length is
        /// refused exactly when the key is over [`MAX_KEY_BYTES`], by the check and by the
        /// genesis reader, and what the check passes Automerge decodes.
        #[test]
        fn a_key_is_refused_exactly_over_the_bound(
            maps in 1u64..64,
            len in (MAX_KEY_BYTES - 8)..(MAX_KEY_BYTES + 8),
        ) {
            let change = one_key_in_many_maps(maps, len);
            let bytes = change.raw_bytes();
            let over = len > MAX_KEY_BYTES;
            proptest::prop_assert_eq!(check_change(bytes, 262_144).is_err(), over);
            proptest::prop_assert_eq!(genesis_change(bytes, 262_144).is_none(), over);
            if !over {
                proptest::prop_assert!(Change::from_bytes(bytes.to_vec()).is_ok());
            }
        }
    }

    #[test]
    fn compressed_truncated_and_foreign_chunks_are_refused() {
        let mut big = change_of(1);
        let mut long = change_of(1).raw_bytes().to_vec();
        long.truncate(long.len() - 3);
        assert!(matches!(
            check_change(&long, 10),
            Err(ChunkError::Truncated(_))
        ));
        assert_eq!(
            check_change(b"not a chunk at all", 10),
            Err(ChunkError::NotAChange)
        );
        let compressed = {
            // Automerge compresses a change of more than 256 bytes.
            let mut c = Change::from(automerge::ExpandedChange {
                message: Some("m".repeat(2_000)),
                ..big.decode()
            });
            c.bytes().to_vec()
        };
        assert_eq!(check_change(&compressed, 10), Err(ChunkError::Compressed));
        assert_eq!(check_change(big.bytes().as_ref(), 10), Ok(()));
    }

    fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn put_sleb(out: &mut Vec<u8>, mut v: i64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0) {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// `chunk` with every repeated run of its operation columns `k` times longer, re-encoded
    /// with a valid checksum: what a hostile roster city signs to make Automerge step through
    /// millions of operations that take a few bytes.
    fn inflate_runs(chunk: &[u8], k: i64) -> Vec<u8> {
        let body = body_of(chunk);
        let mut b = Reader { bytes: body, at: 0 };
        let deps = b.uleb("deps").expect("deps");
        b.skip(deps * 32, "deps").expect("deps");
        let n = b.uleb("actor").expect("actor");
        b.skip(n, "actor").expect("actor");
        b.uleb("seq").expect("seq");
        b.uleb("op").expect("op");
        b.sleb("time").expect("time");
        let n = b.uleb("message").expect("message");
        b.skip(n, "message").expect("message");
        let others = b.uleb("others").expect("others");
        for _ in 0..others {
            let n = b.uleb("other").expect("other");
            b.skip(n, "other").expect("other");
        }
        let prefix = &body[..b.at];
        let columns = b.uleb("columns").expect("columns");
        let specs: Vec<(u64, u64)> = (0..columns)
            .map(|_| (b.uleb("spec").expect("spec"), b.uleb("len").expect("len")))
            .collect();
        let mut meta = Vec::new();
        let mut data = Vec::new();
        put_uleb(&mut meta, columns);
        for (spec, len) in specs {
            let col = b.skip(len, "data").expect("data");
            let mut c = Reader { bytes: col, at: 0 };
            let mut out = Vec::new();
            match spec & 7 {
                7 => out.extend_from_slice(col),
                4 => {
                    while !c.done() {
                        put_uleb(&mut out, c.uleb("run").expect("run") * k as u64);
                    }
                }
                kind => {
                    while !c.done() {
                        let start = c.at;
                        let count = c.sleb("run").expect("run");
                        if count == 0 {
                            out.push(0);
                            put_uleb(&mut out, c.uleb("nulls").expect("nulls") * k as u64);
                            continue;
                        }
                        let n = if count > 0 { 1 } else { count.unsigned_abs() };
                        let value_start = c.at;
                        for _ in 0..n {
                            match kind {
                                3 => drop(c.sleb("v")),
                                5 => {
                                    let l = c.uleb("v").expect("v");
                                    c.skip(l, "v").expect("v");
                                }
                                _ => drop(c.uleb("v")),
                            }
                        }
                        if count > 0 {
                            put_sleb(&mut out, count * k);
                            out.extend_from_slice(&col[value_start..c.at]);
                        } else {
                            out.extend_from_slice(&col[start..c.at]);
                        }
                    }
                }
            }
            put_uleb(&mut meta, spec);
            put_uleb(&mut meta, out.len() as u64);
            data.extend(out);
        }
        let mut new_body = prefix.to_vec();
        new_body.extend(meta);
        new_body.extend(data);
        new_body.extend_from_slice(&body[b.at..]);
        rechunk(&new_body)
    }

    /// The body of change chunk `chunk` (what [`rechunk`] wraps).
    pub(crate) fn body_of(chunk: &[u8]) -> &[u8] {
        let mut r = Reader {
            bytes: chunk,
            at: 9,
        };
        let len = r.uleb("length").expect("length");
        r.skip(len, "body").expect("body")
    }

    /// A change chunk of body `body`, with its length and checksum right.
    pub(crate) fn rechunk(body: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let mut header = vec![CHANGE_CHUNK];
        put_uleb(&mut header, body.len() as u64);
        let hash = sha2::Sha256::new()
            .chain_update(&header)
            .chain_update(body)
            .finalize();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&hash[..4]);
        out.extend(header);
        out.extend(body);
        out
    }

    /// Issue #10 (a review finding): `Change::from_bytes` stepped through every operation that
    /// the run lengths claimed before the operation count was checked; a 130-byte chunk claiming
    /// 130 million operations kept the network task busy for 12 s (release build).
    #[test]
    fn run_length_bombs_are_refused_before_automerge() {
        let honest = change_of(1_000);
        let bomb = inflate_runs(honest.raw_bytes(), 130_000);
        assert!(bomb.len() < 200, "{} bytes", bomb.len());
        assert!(matches!(
            check_change(&bomb, 262_144),
            Err(ChunkError::TooManyValues { .. })
        ));
        // The rewriting itself is faithful: a small factor gives a chunk Automerge reads, with
        // that many operations.
        let bigger = inflate_runs(honest.raw_bytes(), 3);
        assert_eq!(check_change(&bigger, 3_000), Ok(()));
        assert_eq!(Change::from_bytes(bigger).expect("decodes").len(), 3_000);
    }

    /// A genesis chunk of actor `[1; 32]` with these header fields after the actor (seq, start
    /// op, time, message, other actors: as bytes) and these columns, with a valid checksum.
    fn chunk_with(fields: &[u8], columns: &[(u64, &[u8])]) -> Vec<u8> {
        let mut body = vec![0, 32];
        body.extend([1u8; 32]);
        body.extend(fields);
        put_uleb(&mut body, columns.len() as u64);
        for (spec, data) in columns {
            put_uleb(&mut body, *spec);
            put_uleb(&mut body, data.len() as u64);
        }
        for (_, data) in columns {
            body.extend(*data);
        }
        rechunk(&body)
    }

    /// Seq 1, start op 1, time 0, no message, no other actors.
    const FIELDS: &[u8] = &[1, 1, 0, 0, 0];

    /// One operation: the root's key "k" set to null.
    fn one_put() -> Vec<(u64, &'static [u8])> {
        vec![
            (KEY_STR, &[0x7f, 1, b'k']),
            (INSERT, &[1]),
            (ACTION, &[0x7f, 1]),
            (VALUE_META, &[0x7f, 0]),
            (PRED_GROUP, &[0x7f, 0]),
        ]
    }

    /// The genesis reader takes only what Automerge decodes: each chunk here differs from one
    /// both read by one thing Automerge refuses, and the reader must refuse it too.
    #[test]
    fn the_genesis_reader_refuses_what_automerge_refuses() {
        // Automerge panics on some (a counter past 32 bits).
        let decodes = |c: &[u8]| {
            let c = c.to_vec();
            matches!(crate::doc::isolate(|| Change::from_bytes(c)), Ok(Ok(c)) if c.len() == 1)
        };
        let good = chunk_with(FIELDS, &one_put());
        assert!(decodes(&good));
        let read = genesis_change(&good, 10).expect("reads");
        assert_eq!(
            read.hash,
            Change::from_bytes(good.clone()).expect("decodes").hash()
        );
        assert_eq!((read.actor, read.ops.len()), (&[1u8; 32][..], 1));

        let without = |spec: u64| -> Vec<(u64, &'static [u8])> {
            one_put().into_iter().filter(|(s, _)| *s != spec).collect()
        };
        let with = |spec: u64, data: &'static [u8]| -> Vec<(u64, &'static [u8])> {
            let mut cols = without(spec);
            cols.push((spec, data));
            cols.sort_by_key(|(s, _)| *s);
            cols
        };
        let refused: Vec<(&str, Vec<u8>)> = vec![
            ("no insert column", chunk_with(FIELDS, &without(INSERT))),
            (
                "no predecessor column",
                chunk_with(FIELDS, &without(PRED_GROUP)),
            ),
            (
                "a null run of no values ending the actions",
                chunk_with(FIELDS, &with(ACTION, &[0x7f, 1, 0, 0])),
            ),
            (
                "an overlong number as a value",
                chunk_with(FIELDS, &{
                    let mut cols = with(VALUE_META, &[0x7f, 0x23]);
                    cols.push((VALUE_RAW, &[0x81, 0x00]));
                    cols.sort_by_key(|(s, _)| *s);
                    cols
                }),
            ),
            (
                "an empty predecessor actor column",
                chunk_with(FIELDS, &{
                    let mut cols = one_put();
                    cols.push((PRED_ACTOR, &[]));
                    cols
                }),
            ),
            (
                "an object past 32 bits",
                chunk_with(FIELDS, &{
                    let mut cols = one_put();
                    cols.push((OBJ_ACTOR, &[0x7f, 0]));
                    cols.push((OBJ_CTR, &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x10]));
                    cols.sort_by_key(|(s, _)| *s);
                    cols
                }),
            ),
            (
                "an element past 32 bits",
                chunk_with(FIELDS, &{
                    let mut cols = without(KEY_STR);
                    cols.push((KEY_ACTOR, &[0x7f, 0]));
                    cols.push((KEY_CTR, &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x10]));
                    cols.sort_by_key(|(s, _)| *s);
                    cols
                }),
            ),
            (
                "a message that is not UTF-8",
                chunk_with(&[1, 1, 0, 1, 0xff, 0], &one_put()),
            ),
            (
                "an overlong time",
                chunk_with(&[1, 1, 0x80, 0, 0, 0], &one_put()),
            ),
            (
                "an overlong seq",
                chunk_with(&[0x81, 0, 1, 0, 0, 0], &one_put()),
            ),
            ("start op 0", chunk_with(&[1, 0, 0, 0, 0], &one_put())),
            ("bytes after the chunk", {
                let mut c = good.clone();
                c.push(0);
                c
            }),
        ];
        let mut taken = Vec::new();
        for (what, chunk) in refused {
            assert!(!decodes(&chunk), "{what}: Automerge decodes it");
            if genesis_change(&chunk, 10).is_some() {
                taken.push(what);
            }
        }
        assert!(
            taken.is_empty(),
            "the reader takes what Automerge refuses: {taken:?}"
        );
    }
}
