//! Records as Automerge documents, and how concurrent edits merge.
//!
//! Every record lives in its own Automerge document whose root map mirrors the record's JSON form
//! ([`Record::to_json`]). [`to_json`] / [`read_record`] read a document (optionally as at some
//! heads); [`write_record`] reconciles a document to a target record with the fewest operations
//! it can, so that a city's edit touches only what it changed; [`new_document`] and
//! [`edit_document`] wrap that in one committed change. Two shortcuts skip building a document
//! for a new record: [`new_plain_change`] writes the genesis change of an imported record as
//! operations, and [`genesis_json`] reads the record a genesis change creates from its
//! operations (both are checked against Automerge by tests).
//!
//! # How values are stored
//!
//! - JSON objects are Automerge maps; a key absent from the target (e.g. an optional field set to
//!   `None`) is deleted.
//! - Strings under one of the [`TEXT_FIELDS`] keys (`title`, `summary`, `body`, `description`,
//!   `notes`, `charter`) are Automerge **text** objects and are edited with a character diff
//!   (`update_text`). Every other string (dates, status, names, cities, ids, list entries) is a
//!   plain scalar.
//! - Exception: a record created by a bulk import ([`Texts::Plain`]) holds its text fields as
//!   plain strings. Automerge text costs one operation per character (about 1 ms to create and
//!   again to apply for a 700-character record, against some 30 µs as strings), and an imported
//!   record is mostly read, not co-edited. The first edit that changes such a field replaces the
//!   string with a text object; edits of other fields leave it as it is.
//! - Arrays are Automerge lists, reconciled by a longest-common-subsequence diff: elements that
//!   are kept stay untouched (objects kept in place are reconciled recursively), elements no
//!   longer present are deleted and new ones are inserted at their position. Scalars are compared
//!   by value; objects by an identity key — `id` if the objects have one (agenda items), else
//!   `name` (partners), else `label` (figures), see [`IDENTITY_KEYS`]. An element that moved is
//!   deleted and a full copy is inserted at its new position.
//! - Numbers are `Uint` (non-negative integers), `Int` (negative integers) or `F64`; booleans are
//!   `Boolean`. A value is only written when it differs from what the document holds.
//!
//! # What happens to concurrent edits
//!
//! Each of these is checked by a unit test in this module.
//!
//! - **Concurrent additions to a list keep both.** Two cities adding different agenda items (or
//!   themes, links, partners, ...) each insert an element; after merging, both are there, in the
//!   same order on every replica. When both inserted at the same place, the order between the
//!   two is decided by Automerge's op ids, identically everywhere.
//! - **Concurrent edits of one text field merge character-wise.** One city appending " Milan" to
//!   a summary while another prepends "New: " yields "New: … Milan". The one exception is the
//!   *first* edit of a field of an imported record: two such edits made concurrently each
//!   create a text object, and one of the two wins, as for scalars below.
//! - **Short scalar fields are last-writer-wins.** If two cities set the same scalar field
//!   (venue, date, status, a member's role, ...) concurrently, one value wins, the same on every
//!   replica: the operation with the greater Automerge op id — the greater counter, then the
//!   greater actor id. Wall-clock time plays no part. The losing value stays in the document's
//!   history as a conflict but is not shown.
//! - **Delete beats edit.** If one city removes an agenda item while another edits it (its title,
//!   notes, slot, ...), the merged document has no such item: the edit lands on an element that
//!   is no longer in the list and is lost.
//! - **Agenda items are ordered by rank, so a move is one value.** Each item carries a `rank`
//!   (see [`crate::record::Agenda::sort_items`]); a read shows the items in rank order, and
//!   [`write_record`] leaves an item that has a rank where it is in the list, changing its
//!   fields only. Moving an item sets its rank (last-writer-wins): two concurrent moves of one
//!   item leave it once, at one of the two places, the same on every replica, and an edit made
//!   concurrently to the moved item is kept. Two items inserted concurrently at one place get
//!   the same rank and keep their list order.
//! - **Items without ranks** (written by an older version) are ordered by the list: a move
//!   deletes the item and inserts a copy, so a concurrent edit of it is lost and two concurrent
//!   moves leave two copies with one `id` in the merged document (a record with two items of
//!   one id is invalid, but no single change holds both). A writer keeps the first copy
//!   (`Agenda::dedupe_items`), so the next edit removes the other. The CLI ranks an agenda's
//!   items before it moves or inserts.
//! - Two cities adding the same theme or the same partner concurrently leaves it twice.
//! - **Concurrent add and remove of different elements** both take effect.
//!
//! Because the containers of a record (lists, maps, text fields) are created with the document
//! and never re-created by [`write_record`] while they keep their type, concurrent edits inside
//! them always meet in the same object. (If a document lacked a list and two cities created it
//! concurrently, one of the two lists would win; [`Record::to_json`] therefore always writes
//! empty lists, maps and text fields.)

use std::collections::{HashMap, HashSet};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, AutomergeError, Change, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc,
    ScalarValue, Value,
};
use serde_json::{Map, Value as Json};

use crate::chunk::{GenesisAction, GenesisKey, GenesisOp};
use crate::record::{Record, RecordError};

/// How [`write_record`] stores a text field (one of [`TEXT_FIELDS`]) that it creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Texts {
    /// As an Automerge text object: concurrent edits merge character-wise. Records created one
    /// at a time (`practice add`, ...) and every edit use this.
    Merged,
    /// As a plain string, turned into a text object by the first edit that changes it: about
    /// 20 times cheaper to create and to apply for long texts. Bulk imports use this; see the
    /// module documentation for what it means for concurrent first edits.
    Plain,
}

/// How [`write_record`] writes below one object.
#[derive(Clone, Copy)]
struct Ctx {
    /// How new text fields are stored.
    texts: Texts,
    /// The object was created in this transaction and is still empty: nothing to read first.
    fresh: bool,
}

impl Ctx {
    /// The context inside an object just created.
    fn fresh(self) -> Ctx {
        Ctx {
            fresh: true,
            ..self
        }
    }
}

/// Keys whose string values are stored as Automerge text (merged character-wise) rather than as
/// last-writer-wins scalars. Applies to map keys at any depth.
pub const TEXT_FIELDS: &[&str] = &[
    "title",
    "summary",
    "body",
    "description",
    "notes",
    "charter",
    "minutes",
];

/// Keys that identify an object within a list, in order of preference: the first key that every
/// object of the target list has is used to match elements (`id` for agenda items, `name` for
/// partners, `label` for figures). Objects in a list with none of these keys are matched by
/// their whole value.
pub const IDENTITY_KEYS: &[&str] = &["id", "name", "label"];

/// The key of objects ordered by a rank rather than by their place in the list (agenda items,
/// see [`crate::record::Agenda::sort_items`]).
const RANK_KEY: &str = "rank";

/// Largest list diff, in `current × target` elements (after stripping the common prefix and
/// suffix), computed exactly; beyond it the differing middle is replaced wholesale.
const MAX_DIFF_CELLS: usize = 4_000_000;

/// Why a document could not be read or written.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// Automerge refused an operation.
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
    /// The record is not valid, or the document does not hold a valid record shape.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A new document would be empty.
    #[error("the record produced no operations")]
    Empty,
    /// A change just committed could not be found again (a bug in Automerge or here).
    #[error("the committed change {0} is missing from the document")]
    MissingChange(ChangeHash),
}

/// The JSON form of a document (as at `heads`, or its current state if `None`).
///
/// Maps become objects, lists arrays, text strings; scalars map to their JSON counterparts
/// (bytes as a lowercase hex string, timestamps and counters as numbers, non-finite floats and
/// values of unknown types as `null`). Where a key holds conflicting values, Automerge's winner
/// is shown.
pub fn to_json(doc: &Automerge, heads: Option<&[ChangeHash]>) -> Json {
    // Walks the document directly: about twice as fast as `Automerge::hydrate` and converting
    // its tree (a unit test checks that both give the same JSON).
    object_json(doc, &ROOT, ObjType::Map, heads)
}

/// The JSON form of the object `obj` of type `kind` (as at `heads`, or its current state), in
/// a document or inside a transaction.
fn object_json<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    kind: ObjType,
    heads: Option<&[ChangeHash]>,
) -> Json {
    object_json_at(doc, obj, kind, heads, 0)
}

/// Deepest nesting read as JSON: records nest four levels; a document nested deeper (which
/// only a forged change makes) reads as `null` below this depth, and so as no record, instead of
/// exhausting the stack.
const MAX_JSON_DEPTH: usize = 64;

fn object_json_at<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    kind: ObjType,
    heads: Option<&[ChangeHash]>,
    depth: usize,
) -> Json {
    if depth >= MAX_JSON_DEPTH {
        return Json::Null;
    }
    // A scalar, or an object read in turn (its id is only built for objects).
    let value = |v: &automerge::ValueRef<'_>, id: &dyn Fn() -> ObjId| match v {
        automerge::ValueRef::Object(kind) => object_json_at(doc, &id(), *kind, heads, depth + 1),
        automerge::ValueRef::Scalar(s) => scalar_ref_json(s),
    };
    match kind {
        ObjType::Map | ObjType::Table => {
            let items = match heads {
                Some(h) => doc.map_range_at(obj, .., h),
                None => doc.map_range(obj, ..),
            };
            Json::Object(
                items
                    .map(|item| (item.key.to_string(), value(&item.value, &|| item.id())))
                    .collect(),
            )
        }
        ObjType::List => {
            let items = match heads {
                Some(h) => doc.list_range_at(obj, .., h),
                None => doc.list_range(obj, ..),
            };
            Json::Array(
                items
                    .map(|item| value(&item.value, &|| item.id()))
                    .collect(),
            )
        }
        ObjType::Text => Json::String(
            match heads {
                Some(h) => doc.text_at(obj, h),
                None => doc.text(obj),
            }
            .unwrap_or_default(),
        ),
    }
}

fn scalar_ref_json(s: &automerge::ScalarValueRef<'_>) -> Json {
    use automerge::ScalarValueRef as S;
    match s {
        S::Str(s) => Json::String(s.to_string()),
        S::Int(i) => Json::from(*i),
        S::Uint(u) => Json::from(*u),
        S::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        S::Counter(c) | S::Timestamp(c) => Json::from(*c),
        S::Boolean(b) => Json::Bool(*b),
        S::Bytes(b) => Json::String(hex::encode(b)),
        S::Null | S::Unknown { .. } => Json::Null,
    }
}

/// One field a change changed: where (`agendas.5d1c….items[a1b2….].title`), what it held
/// before (None: absent) and what it holds after (None: removed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldChange {
    /// Dotted path of the field; a list element with an `id` is `list[id]`.
    pub path: String,
    /// The value before, if the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Json>,
    /// The value after, if the field still exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Json>,
}

/// The fields that differ between two JSON forms of a record (see [`to_json`]), in key order:
/// maps are compared key by key, lists of objects with an `id` element by element (matched by
/// id), every other value as a whole. Comparing the document before and after one change says
/// what that change did, with the values.
pub fn field_changes(before: &Json, after: &Json) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_into(&mut out, String::new(), Some(before), Some(after));
    out
}

fn diff_into(
    out: &mut Vec<FieldChange>,
    path: String,
    before: Option<&Json>,
    after: Option<&Json>,
) {
    if before == after {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (before, after) {
        (Some(Json::Object(a)), Some(Json::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                diff_into(out, join(key), a.get(key), b.get(key));
            }
        }
        (Some(Json::Array(a)), Some(Json::Array(b)))
            if a.iter()
                .chain(b)
                .all(|v| v.get("id").is_some_and(Json::is_string)) =>
        {
            let id = |v: &Json| {
                v.get("id")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let find = |list: &[Json], key: &str| list.iter().find(|v| id(v) == key).cloned();
            let mut seen = HashSet::new();
            for v in a.iter().chain(b) {
                let key = id(v);
                if seen.insert(key.clone()) {
                    let (x, y) = (find(a, &key), find(b, &key));
                    diff_into(out, format!("{path}[{key}]"), x.as_ref(), y.as_ref());
                }
            }
        }
        // A map of objects (agendas, members, translations by key) that appears or goes as a
        // whole is told entry by entry, so that each entry's history has its creation.
        (None, Some(Json::Object(m))) | (Some(Json::Object(m)), None)
            if !m.is_empty() && m.values().all(Json::is_object) =>
        {
            for (key, v) in m {
                let (x, y) = if before.is_none() {
                    (None, Some(v))
                } else {
                    (Some(v), None)
                };
                diff_into(out, join(key), x, y);
            }
        }
        _ => out.push(FieldChange {
            path,
            before: before.cloned(),
            after: after.cloned(),
        }),
    }
}

/// The record a document holds (as at `heads`, or its current state if `None`).
///
/// This is [`to_json`] followed by [`Record::from_json`]: it checks the shape, not the content
/// (use [`Record::validate`] for that). The read is panic-isolated ([`isolate`]): a document
/// Automerge cannot read gives [`RecordError::Unreadable`].
pub fn read_record(doc: &Automerge, heads: Option<&[ChangeHash]>) -> Result<Record, RecordError> {
    Record::from_json(read_json(doc, heads)?)
}

/// [`to_json`], panic-isolated as [`read_record`] reads it: a document Automerge cannot read
/// gives [`RecordError::Unreadable`].
pub fn read_json(doc: &Automerge, heads: Option<&[ChangeHash]>) -> Result<Json, RecordError> {
    isolate(|| to_json(doc, heads)).map_err(|e| RecordError::Unreadable(e.to_string()))
}

/// About the bytes JSON value `v` holds: each value's own size, and its strings' bytes.
pub fn json_bytes(v: &Json) -> usize {
    std::mem::size_of::<Json>()
        + match v {
            Json::String(s) => s.len(),
            Json::Array(a) => a.iter().map(json_bytes).sum(),
            Json::Object(m) => m.iter().map(|(k, v)| k.len() + json_bytes(v)).sum(),
            Json::Null | Json::Bool(_) | Json::Number(_) => 0,
        }
}

/// The record a document reads as, with the JSON form it was read from ([`to_json`]): what
/// [`json_after`] needs to read the next change made on it.
pub fn read_record_json(
    doc: &Automerge,
    heads: Option<&[ChangeHash]>,
) -> Result<(Record, Json), RecordError> {
    let json = read_json(doc, heads)?;
    Ok((Record::from_json(json.clone())?, json))
}

/// The JSON form of `doc` ([`to_json`] of its current state), where `doc` is a document whose
/// JSON form was `before` plus `change`, its only head, **made by this node's own transaction**
/// on it: `before` with each object the change's operations act on read again, where the
/// document shows it now (an object shown inside another one the change acts on is read with
/// that one; one no longer shown is not read). Objects no operation acts on show what they
/// showed. A change to the root's keys reads the whole document.
///
/// Only for such changes: a received change can hold operations Automerge applies that a
/// transaction never makes (a key that does not fit its object), which a whole read and this
/// one can show differently. None when it cannot tell (an object not found, a path `before`
/// does not have, a panic in Automerge): read the whole document then.
pub fn json_after(doc: &Automerge, before: &Json, change: &Change) -> Option<Json> {
    isolate(|| json_after_inner(doc, before, change))
        .ok()
        .flatten()
}

/// Most objects [`json_after`] reads again one by one, and most operations it decodes to find
/// them: a larger change is read whole (a path is looked up for each object, and reading the
/// whole record costs about what a few dozen lookups do).
const MAX_JSON_AFTER_OBJECTS: usize = 32;
const MAX_JSON_AFTER_OPS: usize = 512;

fn json_after_inner(doc: &Automerge, before: &Json, change: &Change) -> Option<Json> {
    use automerge::legacy::ObjectId;
    if change.len() > MAX_JSON_AFTER_OPS {
        return Some(to_json(doc, None));
    }
    let mut acted_on: HashSet<ObjectId> = HashSet::new();
    for op in change.decode().operations {
        if op.obj == ObjectId::Root {
            return Some(to_json(doc, None));
        }
        acted_on.insert(op.obj);
        if acted_on.len() > MAX_JSON_AFTER_OBJECTS {
            return Some(to_json(doc, None));
        }
    }
    let mut objects: Vec<ObjId> = Vec::with_capacity(acted_on.len());
    for obj in acted_on {
        if let ObjectId::Id(id) = obj {
            objects.push(doc.import_obj(&id.to_string()).ok()?);
        }
    }
    // Where each object is shown now, from the root (a list element by its index among the
    // elements shown, as a whole read places it).
    let mut shown: Vec<(Vec<Prop>, ObjId)> = Vec::with_capacity(objects.len());
    for obj in objects {
        if let Some(path) = doc.parents(&obj).ok()?.visible_path() {
            shown.push((path.into_iter().map(|(_, prop)| prop).collect(), obj));
        }
    }
    // Outer objects first: one read again holds those inside it as they are now.
    shown.sort_by_key(|(path, _)| path.len());
    let mut out = before.clone();
    let mut read: std::collections::BTreeSet<Vec<Prop>> = Default::default();
    for (path, obj) in shown {
        if (0..path.len()).any(|n| read.contains(&path[..n])) {
            continue;
        }
        let kind = doc.object_type(&obj).ok()?;
        let mut slot = &mut out;
        for prop in &path {
            slot = match (slot, prop) {
                (Json::Object(map), Prop::Map(key)) => map.get_mut(key)?,
                (Json::Array(items), Prop::Seq(i)) => items.get_mut(*i)?,
                _ => return None,
            };
        }
        // At the depth a whole read reaches it (which stops at `MAX_JSON_DEPTH`).
        *slot = object_json_at(doc, &obj, kind, None, path.len());
        read.insert(path);
    }
    Some(out)
}

/// Automerge failed on bytes, a change or a document that came from a peer or from disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AutomergeFailure {
    /// Automerge returned an error.
    #[error("Automerge refused it: {0}")]
    Refused(String),
    /// Automerge panicked (it trusts parts of its input, such as actor indices); the panic was
    /// caught.
    #[error("Automerge panicked on it: {0}")]
    Panicked(String),
}

/// Runs `f`, turning a panic into [`AutomergeFailure::Panicked`].
///
/// automerge 0.12 trusts some of what it decodes (`lookup_actor(..).unwrap()` on a change
/// whose chunk lists an actor no operation uses, actor indices, ...). Every call of Automerge on
/// bytes that came from a peer or from disk — decode, load, apply, save, fork, historical
/// reads — goes through this, so that such input turns into an error, never into a dead task.
pub fn isolate<T>(f: impl FnOnce() -> T) -> Result<T, AutomergeFailure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        AutomergeFailure::Panicked(message)
    })
}

/// The first operation of `change` that refers to an operation outside the change's causal
/// past (or is a mark): an object, a list element or a predecessor that is neither in `doc` at the change's
/// dependencies nor earlier in the change itself. `doc` must hold the dependencies. Such a
/// change targets something its author had not seen; whether Automerge can even apply it then
/// depends on what else a node holds, so it is refused before it is applied (`Ok(Some(why))`).
/// Also refused: a change whose operations do not start one after the highest operation of its
/// dependencies, or whose number does not follow its actor's last change in its past (§7.2).
/// Panic-isolated: Automerge trusts some of a change's internals when it expands them.
pub fn reference_outside_past(
    doc: &Automerge,
    change: &Change,
) -> Result<Option<String>, AutomergeFailure> {
    use automerge::legacy::OpId;
    // The dependencies first, then where the operations start.
    let highest = match dependencies_top(doc, change) {
        Ok(highest) => highest,
        Err(missing) => return Ok(Some(missing_dependency(&missing))),
    };
    if change.start_op().get() != highest + 1 {
        return Ok(Some(misnumbered(change, highest)));
    }
    // The causal past, for each actor: the counter ranges of its changes there. Counters have
    // gaps (a change starts after its dependencies' highest operation, which may be another
    // actor's), so "below the actor's highest counter" is not enough.
    let mut past: HashMap<ActorId, Vec<(u64, u64)>> = HashMap::new();
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    let mut stack: Vec<ChangeHash> = change.deps().to_vec();
    let mut own_last = 0u64;
    while let Some(hash) = stack.pop() {
        if !seen.insert(hash) {
            continue;
        }
        let Some(meta) = doc.get_change_meta_by_hash(&hash) else {
            return Ok(Some(missing_dependency(&hash)));
        };
        if meta.actor.as_ref() == change.actor_id() {
            own_last = own_last.max(meta.seq);
        }
        past.entry(meta.actor.clone().into_owned())
            .or_default()
            .push((meta.start_op, meta.max_op));
        stack.extend(meta.deps.iter().copied());
    }
    // An actor numbers its changes 1, 2, 3, … each on top of the one before: a change must
    // follow its actor's last change in its causal past. Else two changes could hold one
    // (actor, seq), and Automerge applies the first it gets and refuses the other; or a gap
    // would leave a later change unappliable once an earlier one is void (§15.4).
    if change.seq() != own_last + 1 {
        return Ok(Some(format!(
            "its actor's change number {} does not follow the actor's last change in its causal past ({own_last})",
            change.seq()
        )));
    }
    for ranges in past.values_mut() {
        ranges.sort_unstable();
    }
    let in_past = |id: &OpId| {
        past.get(&id.1).is_some_and(|ranges| {
            // The last range starting at or below the counter must reach it.
            let at = ranges.partition_point(|(first, _)| *first <= id.0);
            at > 0 && id.0 <= ranges[at - 1].1
        })
    };
    Ok(
        first_unknown_reference(doc, change, in_past, View::Full)?.map(|(index, reason)| {
            match reason {
                Unknown::Mark => format!("operation {index} is a mark, which no record uses"),
                Unknown::OutOfView(why) => format!("operation {index} is out of view: {why}"),
                Unknown::Reference(id) => format!(
                    "operation {index} refers to operation {}@{} outside the change's causal past",
                    id.0,
                    hex::encode(&id.1.to_bytes()[..id.1.to_bytes().len().min(6)])
                ),
            }
        }),
    )
}

/// [`reference_outside_past`] without its walk, where the change's past is all of `doc` (its
/// dependencies name every head): true only if the change passes there, provided that no change
/// of its actor in `doc` holds its number or a higher one. False says nothing (ask
/// [`reference_outside_past`]). That proviso is the caller's: Automerge refuses to apply a
/// change whose actor has that number in the document already, so a change that this passes
/// and that then applies also passes [`reference_outside_past`], and one that fails to apply
/// must be asked again. The rest is exact because every change held passed the same rules: an
/// actor's changes follow one another, each starting after its dependencies, so their
/// operation ranges are disjoint and ordered, and Automerge's lookup of the change holding an
/// operation (a binary search over its actor's changes) finds it if it is there. (A store
/// upgraded from sync version 4 may hold a change numbered otherwise, accepted before the rule;
/// docs/operations.md says how to rebuild such a store.)
pub fn references_inside_whole_doc(doc: &Automerge, change: &Change) -> bool {
    isolate(|| inside_whole_doc(doc, change, false)).unwrap_or(false)
}

/// [`references_inside_whole_doc`] of the document `after` is with `change` taken out, where
/// `change` is the only head of `after`: what the change was made on is then all of `after`
/// but the change, whose own operations do not count as held. The proviso holds: `after` holds
/// the change, and Automerge neither applies a change whose actor's number it holds nor makes
/// one with a number below its actor's last.
pub fn references_inside_whole_doc_after(after: &Automerge, change: &Change) -> bool {
    isolate(|| inside_whole_doc(after, change, true)).unwrap_or(false)
}

/// The check of [`references_inside_whole_doc`], on the document before `change` or, if
/// `applied`, after it.
fn inside_whole_doc(doc: &Automerge, change: &Change, applied: bool) -> bool {
    use automerge::legacy::OpId;
    let deps = change.deps();
    let heads = doc.get_heads();
    let hash = change.hash();
    if deps.is_empty() {
        return false;
    }
    // Every head of the document before the change is among its dependencies; after it, the
    // change is the one head (so the rest is its causal past).
    if applied && heads != [hash] || !applied && heads.iter().any(|h| !deps.contains(h)) {
        return false;
    }
    if dependencies_top(doc, change).map(|highest| highest + 1) != Ok(change.start_op().get()) {
        return false;
    }
    let (actor, seq) = (change.actor_id(), change.seq());
    let mut follows = seq == 1;
    for hash in deps {
        let Some(meta) = doc.get_change_meta_by_hash(hash) else {
            return false;
        };
        if meta.actor.as_ref() == actor {
            if meta.seq + 1 != seq {
                return false;
            }
            follows = true;
        }
    }
    if !follows {
        return false;
    }
    // Automerge numbers operations in 32 bits: a higher counter is in no document (and its
    // lookup would panic).
    let in_doc = |id: &OpId| {
        u32::try_from(id.0).is_ok()
            && doc
                .hash_for_opid(&automerge::ObjId::Id(id.0, id.1.clone(), 0))
                .is_some_and(|held| !applied || held != hash)
    };
    // A node's own edit (`applied`) is its writer's: rules 4 and 5 hold by construction.
    let view = if applied { View::OwnEdit } else { View::Full };
    let passes = matches!(first_unknown_reference(doc, change, in_doc, view), Ok(None));
    debug_assert!(
        !passes
            || !applied
            || matches!(
                first_unknown_reference(doc, change, in_doc, View::Full),
                Ok(None)
            ),
        "this node's writer made a change out of view (§7.3)"
    );
    passes
}

/// Why an operation is refused by [`first_unknown_reference`].
enum Unknown {
    /// A mark: it names the operation before it implicitly.
    Mark,
    /// It refers to this operation, which is neither earlier in the change nor `in_past`.
    Reference(automerge::legacy::OpId),
    /// It is out of view (§7.3), for this reason.
    OutOfView(String),
}

/// The first operation of `change` that is a mark, refers to an operation that is neither
/// earlier in the change nor `in_past`, or is out of view in `doc` at the change's
/// dependencies ([`first_out_of_view`]), with its index. `doc` holds the dependencies.
/// Panic-isolated.
fn first_unknown_reference(
    doc: &Automerge,
    change: &Change,
    in_past: impl Fn(&automerge::legacy::OpId) -> bool,
    view: View,
) -> Result<Option<(u64, Unknown)>, AutomergeFailure> {
    use automerge::legacy::{ElementId, Key, ObjectId, OpId, OpType};
    let expanded = isolate(|| change.decode())?;
    let actor = change.actor_id();
    let start = change.start_op().get();
    let known = |id: &OpId, index: u64| {
        (id.1 == *actor && id.0 >= start && id.0 < start + index) || in_past(id)
    };
    for (index, op) in (0u64..).zip(&expanded.operations) {
        // Marks name the operation before them implicitly; records never use them.
        if matches!(op.action, OpType::MarkBegin(_) | OpType::MarkEnd(_)) {
            return Ok(Some((index, Unknown::Mark)));
        }
        let mut refs: Vec<&OpId> = op.pred.iter().collect();
        if let ObjectId::Id(id) = &op.obj {
            refs.push(id);
        }
        if let Key::Seq(ElementId::Id(id)) = &op.key {
            refs.push(id);
        }
        if let Some(id) = refs.into_iter().find(|id| !known(id, index)) {
            return Ok(Some((index, Unknown::Reference(id.clone()))));
        }
    }
    Ok(isolate(|| first_out_of_view(doc, change, &expanded, view))?
        .map(|(index, why)| (index, Unknown::OutOfView(why))))
}

/// Whether `s` is exactly one character (Unicode scalar value): what a text holds (§7.3 rule 6).
fn one_char(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some() && chars.next().is_none()
}

/// How much of §7.3 [`first_out_of_view`] checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum View {
    /// Every rule, reading the document at the change's dependencies.
    Full,
    /// The rules that read the change alone (1, 2, 3 and 6), for a change this node's writer
    /// made with an Automerge transaction on the document at its dependencies: such a change
    /// names exactly what each key or element holds (Automerge's local operations do), and the
    /// writer writes only in objects it has just read there, so rules 4 and 5 hold by
    /// construction (debug builds check them all the same; property test
    /// `item_edits_read_back_exactly` checks that every rule passes).
    OwnEdit,
}

/// Most writes or deletes of one change at list or text elements holding more than one value
/// at the change's dependencies (§7.3 rule 4): reading all of an element's values at a past
/// version costs a pass over its object.
pub const MAX_CONFLICTED_WRITES: usize = 64;

/// Why the `n`th write at an element holding several values is refused.
fn conflicted_why(n: usize) -> String {
    format!(
        "it is the change's write number {n} at an element holding several values (at most {MAX_CONFLICTED_WRITES})"
    )
}

/// What [`first_out_of_view`] has read of one list or text at the change's dependencies.
#[derive(Default)]
struct Elements {
    /// The position of every element in view, by id (`counter@actor`).
    at: Option<HashMap<String, usize>>,
    /// Each element's winning value and whether it holds others.
    winners: Option<Vec<(ObjId, bool)>>,
}

/// The position of element `e` of `obj` at `deps` and every value it holds there, or `None` if
/// it is not in view there. Each list or text is read once, whole, into `known` (its element
/// ids and each element's winning value), at the heads or, if `clocked` (`deps` are not `doc`'s
/// heads), at a past version: one pass over the object either way, so that both decide alike.
/// (Automerge's cursor lookups count a text's characters, not its elements, and scan the whole
/// list for an element written over in place; at a past version, every read is such a pass.)
/// `Err` if Automerge cannot read it.
fn element_at(
    doc: &Automerge,
    deps: &[ChangeHash],
    clocked: bool,
    obj: &ObjId,
    e: &automerge::legacy::OpId,
    known: &mut Elements,
) -> Result<Option<(usize, Vec<ObjId>)>, ()> {
    let name = format!("{}@{}", e.0, e.1);
    let map = known.at.get_or_insert_with(|| {
        let keys = if clocked {
            doc.keys_at(obj, deps)
        } else {
            doc.keys(obj)
        };
        keys.enumerate().map(|(i, id)| (id, i)).collect()
    });
    let Some(&at) = map.get(&name) else {
        return Ok(None);
    };
    let winners = known.winners.get_or_insert_with(|| {
        let items = if clocked {
            doc.list_range_at(obj, .., deps)
        } else {
            doc.list_range(obj, ..)
        };
        items.map(|item| (item.id(), item.conflict)).collect()
    });
    let Some((winner, conflict)) = winners.get(at).cloned() else {
        return Err(());
    };
    if !conflict {
        return Ok(Some((at, vec![winner])));
    }
    let values = if clocked {
        doc.get_all_at(obj, at, deps)
    } else {
        doc.get_all(obj, at)
    };
    let values: Vec<ObjId> = values
        .map_err(|_| ())?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    Ok(Some((at, values)))
}

/// The first operation of `change` (decoded as `expanded`) that is out of view (§7.3 of
/// docs/protocol.md), with its index and why; `doc` holds the change's dependencies, and every
/// reference of the change is in its causal past or earlier in the change.
///
/// An operation that is not seen in the record it leaves behind costs every node as much as one
/// that is, and the encoding makes such operations almost free: a run of overwrites of one key,
/// each naming the one before, takes a few bytes for any length. So every operation of a
/// change must stay in view, or take something in view away:
/// - an insert is the change's, and names no predecessor;
/// - no operation names one of the same change as its predecessor, nor writes at an element
///   the change inserted (nothing the change makes is undone by it);
/// - at most one operation of a change writes at each (object, key or element), and none
///   increments a counter (no record has one);
/// - an operation that writes or deletes at a key or element names as predecessors exactly
///   the values it holds at the change's dependencies, and a delete at least one: it replaces
///   what was there, or takes it away (at most [`MAX_CONFLICTED_WRITES`] at elements holding
///   several);
/// - every object the change writes in from its past is in view at its dependencies (each
///   object on its way from the root is the value at its key or element), and stays so: no
///   operation of the change writes at a key or element on that way;
/// - a value written in a text is a string of exactly one character.
fn first_out_of_view(
    doc: &Automerge,
    change: &Change,
    expanded: &automerge::ExpandedChange,
    view: View,
) -> Option<(u64, String)> {
    use automerge::legacy::{ElementId, Key, ObjectId, OpId, OpType};
    let deps = change.deps();
    let clocked = !same_heads(&doc.get_heads(), deps);
    let actor = change.actor_id();
    let start = change.start_op().get();
    let end = start.saturating_add(expanded.operations.len() as u64);
    let own = |id: &OpId| id.1 == *actor && id.0 >= start && id.0 < end;
    let exid = |obj: &ObjectId| match obj {
        ObjectId::Root => ObjId::Root,
        ObjectId::Id(id) => ObjId::Id(id.0, id.1.clone(), 0),
    };
    // The change's writes at a key or element (and at which position of their list, for
    // elements), and the objects it writes in from its past.
    let mut written: HashSet<(&ObjectId, &Key)> = HashSet::new();
    let mut written_at: HashSet<(&ObjectId, usize)> = HashSet::new();
    let mut objects: Vec<(u64, &ObjectId)> = Vec::new();
    let mut seen: HashSet<&ObjectId> = HashSet::new();
    let mut lists: HashMap<&ObjectId, Elements> = HashMap::new();
    let mut conflicted = 0usize;
    // An Automerge read that fails refuses the operation (none should, for references in the
    // change's past).
    let unread = |index: u64| {
        Some((
            index,
            "it could not be read at the change's dependencies".into(),
        ))
    };
    // The type of each object written in: a text holds strings only.
    let mut types: HashMap<&ObjectId, Option<ObjType>> = HashMap::new();
    for (index, op) in (0u64..).zip(&expanded.operations) {
        let past_object = !matches!(&op.obj, ObjectId::Id(id) if own(id));
        if past_object && op.obj != ObjectId::Root && seen.insert(&op.obj) {
            objects.push((index, &op.obj));
        }
        if matches!(op.action, OpType::Increment(_)) {
            return Some((index, "it increments a counter, which no record has".into()));
        }
        let typ = *types.entry(&op.obj).or_insert_with(|| match &op.obj {
            ObjectId::Root => Some(ObjType::Map),
            ObjectId::Id(id) if own(id) => {
                match expanded
                    .operations
                    .get(usize::try_from(id.0 - start).ok()?)?
                    .action
                {
                    OpType::Make(t) => Some(t),
                    _ => None,
                }
            }
            obj => doc.object_type(exid(obj)).ok(),
        });
        // Any value written in a text costs a byte at least (a null, a boolean or an empty
        // string costs none, and a text reads as its strings alone), and is one character, as
        // Automerge's `splice_text` writes it: positions in a text then count its elements.
        if typ == Some(ObjType::Text)
            && !(matches!(&op.action, OpType::Delete)
                || matches!(&op.action, OpType::Put(ScalarValue::Str(s)) if one_char(s)))
        {
            return Some((
                index,
                "it writes something other than a string of one character in a text".into(),
            ));
        }
        if op.insert {
            if !op.pred.is_empty() {
                return Some((index, "it inserts and names predecessors".into()));
            }
            continue;
        }
        if let Some(p) = op.pred.iter().find(|p| own(p)) {
            return Some((
                index,
                format!("it overwrites operation {} of its own change", p.0),
            ));
        }
        match &op.key {
            Key::Seq(ElementId::Id(e)) if own(e) => {
                return Some((index, "it writes at an element of its own change".into()));
            }
            Key::Seq(ElementId::Head) => {
                return Some((index, "it writes at the head of a list".into()));
            }
            _ => {}
        }
        if !written.insert((&op.obj, &op.key)) {
            return Some((
                index,
                "it is the change's second write at one key or element".into(),
            ));
        }
        if matches!(op.action, OpType::Delete) && op.pred.is_empty() {
            return Some((index, "it deletes nothing".into()));
        }
        if view == View::OwnEdit {
            // Its predecessors are what the element holds (rule 4 by construction): count the
            // writes at elements holding several values as the whole rule does.
            if matches!(op.key, Key::Seq(_)) && op.pred.len() > 1 {
                conflicted += 1;
                if conflicted > MAX_CONFLICTED_WRITES {
                    return Some((index, conflicted_why(conflicted)));
                }
            }
            continue;
        }
        // What the key or element holds at the dependencies: nothing in an object of the
        // change's own.
        let held: Vec<ObjId> = if !past_object {
            Vec::new()
        } else {
            let obj = exid(&op.obj);
            match &op.key {
                Key::Map(k) => match doc.get_all_at(&obj, k.as_str(), deps) {
                    Ok(values) => values.into_iter().map(|(_, id)| id).collect(),
                    Err(_) => return unread(index),
                },
                Key::Seq(ElementId::Id(e)) => {
                    let known = lists.entry(&op.obj).or_default();
                    match element_at(doc, deps, clocked, &obj, e, known) {
                        Ok(Some((at, values))) => {
                            written_at.insert((&op.obj, at));
                            if values.len() > 1 {
                                conflicted += 1;
                                if conflicted > MAX_CONFLICTED_WRITES {
                                    return Some((index, conflicted_why(conflicted)));
                                }
                            }
                            values
                        }
                        Ok(None) => Vec::new(),
                        Err(()) => return unread(index),
                    }
                }
                Key::Seq(ElementId::Head) => Vec::new(),
            }
        };
        // Both in the order of the predecessors' `SortedVec`.
        let mut held: Vec<OpId> = held
            .into_iter()
            .filter_map(|id| match id {
                ObjId::Id(c, a, _) => Some(OpId(c, a)),
                ObjId::Root => None,
            })
            .collect();
        held.sort_unstable();
        if !op.pred.iter().eq(held.iter()) {
            return Some((
                index,
                "its predecessors are not what its key or element holds at the change's dependencies"
                    .into(),
            ));
        }
    }
    if view == View::OwnEdit {
        return None;
    }
    // Each object written in from the change's past, on its way from the root.
    for (index, obj) in objects {
        let Ok(way) = doc.parents_at(exid(obj), deps) else {
            return unread(index);
        };
        for parent in way {
            if !parent.visible {
                return Some((
                    index,
                    "it writes in an object out of view at the change's dependencies".into(),
                ));
            }
            let parent_obj = match &parent.obj {
                ObjId::Root => ObjectId::Root,
                ObjId::Id(c, a, _) => ObjectId::Id(OpId(*c, a.clone())),
            };
            let taken = match parent.prop {
                Prop::Map(k) => written.contains(&(&parent_obj, &Key::Map(k.into()))),
                Prop::Seq(i) => written_at.contains(&(&parent_obj, i)),
            };
            if taken {
                return Some((
                    index,
                    "it writes in an object that the change takes out of view".into(),
                ));
            }
        }
    }
    None
}

/// The highest operation number among `change`'s dependencies in `doc` (0 without any), which
/// its first operation must follow (§7.2); or the first dependency `doc` does not hold (the last
/// named first).
fn dependencies_top(doc: &Automerge, change: &Change) -> Result<u64, ChangeHash> {
    change.deps().iter().rev().try_fold(0u64, |highest, hash| {
        doc.get_change_meta_by_hash(hash)
            .map(|meta| highest.max(meta.max_op))
            .ok_or(*hash)
    })
}

fn missing_dependency(hash: &ChangeHash) -> String {
    format!(
        "dependency {} is not in the document",
        hex::encode(&hash.0[..6])
    )
}

fn misnumbered(change: &Change, highest: u64) -> String {
    format!(
        "its operations start at {}, not at {}, one after the highest operation of its dependencies",
        change.start_op(),
        highest + 1
    )
}

/// The kind of record a document holds, from its root `kind` key alone (no record is read).
/// None if the key is missing or not a known kind. A record's kind never changes (§15).
pub fn kind_of(doc: &Automerge) -> Option<crate::record::Kind> {
    let value = isolate(|| doc.get(automerge::ROOT, "kind")).ok()?.ok()??;
    match value {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Str(t) => t.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `change` could lower a city's rights in a record (§15.5): it deletes something,
/// replaces an object, overwrites a list element, or writes a key named `role`, `members` or
/// `editors` or a key that is a city id (a member's entry). A change without any of these
/// cannot lower anyone. Conservative: true when the change does not decode.
pub fn may_lower(change: &Change) -> bool {
    use automerge::legacy::{Key, OpType};
    let Ok(expanded) = isolate(|| change.decode()) else {
        return true;
    };
    expanded.operations.iter().any(|op| {
        matches!(op.action, OpType::Delete)
            // Replacing an object (a member's, say, by one without a role).
            || (matches!(op.action, OpType::Make(_)) && !op.pred.is_empty())
            || matches!(&op.key, Key::Map(k) if matches!(k.as_str(), "role" | "members" | "editors")
                || k.parse::<crate::identity::CityId>().is_ok())
            || (matches!(op.key, Key::Seq(_)) && !op.insert && !op.pred.is_empty())
    })
}

/// Loads a document (saved bytes, or a change chunk) that came from a peer or from disk,
/// panic-isolated.
pub fn load(bytes: &[u8]) -> Result<Automerge, AutomergeFailure> {
    isolate(|| Automerge::load(bytes))?.map_err(|e| AutomergeFailure::Refused(e.to_string()))
}

/// Saves a document (uncompressed), panic-isolated.
pub fn save(doc: &Automerge) -> Result<Vec<u8>, AutomergeFailure> {
    isolate(|| doc.save_nocompress())
}

/// The document as it was at `heads`, panic-isolated.
pub fn fork_at(doc: &Automerge, heads: &[ChangeHash]) -> Result<Automerge, AutomergeFailure> {
    isolate(|| doc.fork_at(heads))?.map_err(|e| AutomergeFailure::Refused(e.to_string()))
}

/// Applies changes to `doc`, panic-isolated. On an error `doc` may hold part of them: apply to a
/// copy when that matters.
pub fn apply(doc: &mut Automerge, changes: Vec<Change>) -> Result<(), AutomergeFailure> {
    isolate(|| doc.apply_changes(changes))?.map_err(|e| AutomergeFailure::Refused(e.to_string()))
}

/// Whether two sets of heads are the same, in any order.
pub fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// Reconciles the document's root to `target` with as few operations as it can; see the
/// [module docs](self) for the rules. Does not validate `target` and does not commit.
///
/// Afterwards, reading the document inside the transaction gives exactly `target.to_json()`.
pub fn write_record<T: Transactable>(
    tx: &mut T,
    target: &Record,
    texts: Texts,
) -> Result<(), DocError> {
    write_record_over(tx, target, None, texts)
}

/// [`write_record`] on a document whose JSON form is `before` ([`to_json`] of it as it is in
/// the transaction, exactly: the caller's promise): the parts of `target` equal to `before`'s
/// are not read again nor written, and what the document holds is taken from `before` instead
/// of read (a map's keys, a text's value, a kept list element's identity), which makes an edit
/// of one field cost that field, not the whole record. The document then reads as `target` all
/// the same.
pub fn write_record_over<T: Transactable>(
    tx: &mut T,
    target: &Record,
    before: Option<&Json>,
    texts: Texts,
) -> Result<(), DocError> {
    // An empty document has nothing to compare with: every value is simply written.
    let fresh = match before {
        Some(json) => json.as_object().is_some_and(Map::is_empty),
        None => tx.keys(&ROOT).next().is_none(),
    };
    let before = if fresh { None } else { before };
    match target.to_json() {
        Json::Object(map) => reconcile_map(
            tx,
            &ROOT,
            &map,
            Ctx { texts, fresh },
            before.and_then(Json::as_object),
        ),
        // A record always serializes to a JSON object; anything else would be a bug in
        // `Record::to_json`, reported rather than panicking.
        other => Err(DocError::Record(RecordError::Json(format!(
            "a record must serialize to a JSON object, got {other}"
        )))),
    }
}

/// A new document holding `record`, written by `actor` in one change with the given commit
/// message. Returns the document and that change (which is what gets signed and published).
///
/// The record is validated first.
pub fn new_document(
    actor: ActorId,
    record: &Record,
    message: &str,
    texts: Texts,
) -> Result<(Automerge, Change), DocError> {
    record.validate()?;
    let mut doc = Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    write_record(&mut tx, record, texts)?;
    if tx.pending_ops() == 0 {
        return Err(DocError::Empty);
    }
    let (hash, _) = tx.commit_with(CommitOptions::default().with_message(message));
    let hash = hash.ok_or(DocError::Empty)?;
    let change = doc
        .get_change_by_hash(&hash)
        .ok_or(DocError::MissingChange(hash))?;
    Ok((doc, change))
}

/// The genesis change of a new document holding `record` with its text fields as plain
/// strings ([`Texts::Plain`]), written by `actor`, built directly as Automerge operations: no
/// document is built (about 10 times cheaper than [`new_document`]). Applying the change to an
/// empty document gives the same document as [`new_document`] with [`Texts::Plain`]: the same
/// operations in the same order (a test checks it).
///
/// The record is validated first.
pub fn new_plain_change(
    actor: ActorId,
    record: &Record,
    message: &str,
) -> Result<Change, DocError> {
    use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};

    /// Appends the operations that write `value` at `key` of `obj`.
    fn emit(
        ops: &mut Vec<Op>,
        actor: &ActorId,
        obj: ObjectId,
        key: Key,
        insert: bool,
        value: &Json,
    ) {
        let counter = ops.len() as u64 + 1;
        let make = |kind| Op {
            action: OpType::Make(kind),
            obj: obj.clone(),
            key: key.clone(),
            pred: SortedVec::new(),
            insert,
        };
        match value {
            Json::Object(map) => {
                ops.push(make(ObjType::Map));
                let id = ObjectId::Id(OpId::new(counter, actor));
                for (k, v) in map {
                    emit(
                        ops,
                        actor,
                        id.clone(),
                        Key::Map(k.as_str().into()),
                        false,
                        v,
                    );
                }
            }
            Json::Array(items) => {
                ops.push(make(ObjType::List));
                let id = ObjectId::Id(OpId::new(counter, actor));
                let mut prev = ElementId::Head;
                for item in items {
                    let at = ops.len() as u64 + 1;
                    emit(ops, actor, id.clone(), Key::Seq(prev), true, item);
                    prev = ElementId::Id(OpId::new(at, actor));
                }
            }
            scalar => ops.push(Op {
                action: OpType::Put(json_to_scalar(scalar).unwrap_or(ScalarValue::Null)),
                obj,
                key,
                pred: SortedVec::new(),
                insert,
            }),
        }
    }

    record.validate()?;
    let Json::Object(map) = record.to_json() else {
        return Err(DocError::Empty);
    };
    let mut ops = Vec::new();
    for (k, v) in &map {
        emit(
            &mut ops,
            &actor,
            ObjectId::Root,
            Key::Map(k.as_str().into()),
            false,
            v,
        );
    }
    if ops.is_empty() {
        return Err(DocError::Empty);
    }
    Ok(Change::from(automerge::ExpandedChange {
        operations: ops,
        actor_id: actor,
        hash: None,
        seq: 1,
        start_op: std::num::NonZeroU64::MIN,
        time: 0,
        message: Some(message.to_string()),
        deps: Vec::new(),
        extra_bytes: Vec::new(),
        author: None,
    }))
}

/// Deepest nesting [`genesis_json`] reads (records nest three levels).
const MAX_GENESIS_DEPTH: usize = 32;

/// A value written by a genesis change: a string, another scalar, or the object made by the op
/// with this counter.
enum Slot<'a> {
    Str(&'a str),
    Scalar(ScalarValue),
    Object(u64),
}

/// An object made by a genesis change.
enum Node<'a> {
    /// A map: its entries in op order.
    Map(Vec<(&'a str, Slot<'a>)>),
    /// A list or text: its elements in list order, each with the counter of the op that
    /// inserted it.
    Seq {
        text: bool,
        elements: Vec<(u64, Slot<'a>)>,
    },
}

/// Inserts into a list or text of more than this many elements are read only at its end:
/// anywhere else [`genesis_json`] declines (Automerge applies the change). Placing an element
/// elsewhere costs a search and a shift of the list, so this bounds that work by the number of
/// operations. A change made by Intercity only ever appends.
const MAX_GENESIS_MIDDLE_INSERT: usize = 256;

/// The JSON form of the document that the genesis change `change` creates, read from its
/// operations without building the document (about 10 times cheaper than applying it); the
/// same as [`to_json`] of an empty document after applying `change` (tests check it).
///
/// `None` when `change` is not such a change or holds anything this reader does not model:
/// dependencies, deletes, increments, marks, tables, overwrites (predecessors), two values for
/// one key, references to objects or elements the change did not create, nesting deeper than
/// 32, an insert other than at the end of a list of more than 256 elements. The caller then
/// applies the change with Automerge instead.
pub fn genesis_json(change: &Change) -> Option<Json> {
    // Every genesis change this code makes is its actor's first: seq 1 from op 1.
    if !change.deps().is_empty() || change.seq() != 1 || change.start_op().get() != 1 {
        return None;
    }
    // The change's bytes become the stored document, and `Automerge::load` checks the chunk's
    // checksum (bytes 4..8, the hash's first four) where decoding and applying do not: a
    // change with a wrong one goes through Automerge and is stored as a saved document.
    if change.raw_bytes().get(4..8) != Some(&change.hash().0[..4]) {
        return None;
    }
    // The bytes are stored as the document, and `Automerge::load` panics on a chunk that lists
    // an actor no operation uses (`lookup_actor(..).unwrap()`). A genesis change that only
    // touches objects of its own actor has no use for other actors: decline any.
    if !change.other_actor_ids().is_empty() {
        return None;
    }
    // Read straight from the chunk's columns where it can; Automerge decodes the rest.
    if let Some(ops) = crate::chunk::genesis_ops(change.raw_bytes())
        && ops.len() == change.len()
    {
        return genesis_json_of(ops);
    }
    // `decode` trusts the change's actor indices; a forged change must not bring the node down.
    let expanded = isolate(|| change.decode()).ok()?;
    genesis_json_of(decoded_genesis_ops(&expanded)?)
}

/// [`genesis_json`] of a change read from its payload without Automerge
/// ([`crate::chunk::genesis_change`]): the change's hash and actor, and the JSON. `None` where
/// that reader declines the payload (then decode it with Automerge, and ask [`genesis_json`]) or
/// [`genesis_json`] would answer `None`, or the change has over `max_ops` operations. Where it
/// answers, Automerge decodes the payload, and [`genesis_json`] of that change is the same JSON.
pub(crate) fn genesis_json_of_payload(
    payload: &[u8],
    max_ops: u64,
) -> Option<(ChangeHash, &[u8], Json)> {
    let change = crate::chunk::genesis_change(payload, max_ops)?;
    Some((change.hash, change.actor, genesis_json_of(change.ops)?))
}

/// The operations of a decoded genesis change as [`GenesisOp`]s: `None` where one refers to
/// another actor, has predecessors, or neither puts a scalar nor makes an object.
fn decoded_genesis_ops(expanded: &automerge::ExpandedChange) -> Option<Vec<GenesisOp<'_>>> {
    use automerge::legacy::{ElementId, Key, ObjectId, OpType};
    let actor = &expanded.actor_id;
    let ours = |id: &automerge::legacy::OpId| (id.actor() == actor).then_some(id.counter());
    let mut ops = Vec::with_capacity(expanded.operations.len());
    for op in &expanded.operations {
        if !op.pred.is_empty() {
            return None;
        }
        ops.push(GenesisOp {
            obj: match &op.obj {
                ObjectId::Root => 0,
                ObjectId::Id(id) => ours(id)?,
            },
            key: match &op.key {
                Key::Map(k) => GenesisKey::Map(k),
                Key::Seq(ElementId::Head) => GenesisKey::Head,
                Key::Seq(ElementId::Id(id)) => GenesisKey::After(ours(id)?),
            },
            insert: op.insert,
            action: match &op.action {
                OpType::Put(ScalarValue::Str(text)) => GenesisAction::PutStr(text),
                OpType::Put(v) => GenesisAction::Put(v.clone()),
                OpType::Make(kind) => GenesisAction::Make(*kind),
                _ => return None,
            },
        });
    }
    Some(ops)
}

/// [`genesis_json`] of a genesis change's operations (op counters from 1).
fn genesis_json_of(ops: Vec<GenesisOp<'_>>) -> Option<Json> {
    // The objects made, by the counter of the op that made each (0: the root). Ops come in
    // counter order, so the vector stays sorted.
    let mut nodes: Vec<(u64, Option<Node>)> = vec![(0, Some(Node::Map(Vec::new())))];
    for (i, op) in ops.into_iter().enumerate() {
        let counter = i as u64 + 1;
        let (slot, created) = match op.action {
            GenesisAction::PutStr(text) => (Slot::Str(text), None),
            GenesisAction::Put(v) => (Slot::Scalar(v), None),
            GenesisAction::Make(ObjType::Map) => {
                (Slot::Object(counter), Some(Node::Map(Vec::new())))
            }
            GenesisAction::Make(kind @ (ObjType::List | ObjType::Text)) => (
                Slot::Object(counter),
                Some(Node::Seq {
                    text: kind == ObjType::Text,
                    elements: Vec::new(),
                }),
            ),
            GenesisAction::Make(ObjType::Table) => return None,
        };
        let at = nodes.binary_search_by_key(&op.obj, |(c, _)| *c).ok()?;
        match (nodes[at].1.as_mut()?, op.key, op.insert) {
            (Node::Map(entries), GenesisKey::Map(k), false) => entries.push((k, slot)),
            (
                Node::Seq { text, elements },
                elem @ (GenesisKey::Head | GenesisKey::After(_)),
                true,
            ) => {
                // A text holds strings of one character (§7.3 rule 6): anything else goes to
                // Automerge and the rule.
                if *text && !matches!(slot, Slot::Str(s) if one_char(s)) {
                    return None;
                }
                // Automerge's list order (RGA): each element follows the one it was inserted
                // after, and elements inserted after the same one go newest (greatest op id)
                // first. Every element here is its actor's newest so far, so it goes right
                // after the element it names (first, after the head).
                let place = match elem {
                    GenesisKey::After(after) if elements.last().map(|(c, _)| *c) == Some(after) => {
                        elements.len()
                    }
                    _ if elements.len() > MAX_GENESIS_MIDDLE_INSERT => return None,
                    GenesisKey::After(after) => elements.iter().position(|(c, _)| *c == after)? + 1,
                    _ => 0,
                };
                elements.insert(place, (counter, slot));
            }
            _ => return None,
        }
        if let Some(node) = created {
            nodes.push((counter, Some(node)));
        }
    }
    render(&mut nodes, 0, 0)
}

/// Renders the object made by op `id` (0: the root) as JSON, taking it out of `nodes`.
fn render(nodes: &mut [(u64, Option<Node<'_>>)], id: u64, depth: usize) -> Option<Json> {
    if depth > MAX_GENESIS_DEPTH {
        return None;
    }
    let value = |slot: Slot<'_>, nodes: &mut [(u64, Option<Node<'_>>)]| match slot {
        Slot::Str(text) => Some(Json::String(text.to_string())),
        Slot::Scalar(s) => Some(scalar_to_json(&s)),
        Slot::Object(child) => render(nodes, child, depth + 1),
    };
    let at = nodes.binary_search_by_key(&id, |(c, _)| *c).ok()?;
    match nodes[at].1.take()? {
        Node::Map(entries) => {
            let mut map = Map::new();
            for (k, slot) in entries {
                let v = value(slot, nodes)?;
                if map.insert(k.to_string(), v).is_some() {
                    return None;
                }
            }
            Some(Json::Object(map))
        }
        Node::Seq {
            text: true,
            elements,
        } => {
            fn text<'a>(slot: &Slot<'a>) -> &'a str {
                match slot {
                    Slot::Str(s) => s,
                    _ => "",
                }
            }
            let mut out = String::with_capacity(elements.iter().map(|(_, s)| text(s).len()).sum());
            for (_, slot) in &elements {
                out.push_str(text(slot));
            }
            Some(Json::String(out))
        }
        Node::Seq {
            text: false,
            elements,
        } => {
            let mut items = Vec::with_capacity(elements.len());
            for (_, slot) in elements {
                items.push(value(slot, nodes)?);
            }
            Some(Json::Array(items))
        }
    }
}

/// Edits `doc` so that it holds `target`, as `actor`, in one change with the given commit
/// message. Returns that change, or `None` if the document already holds `target` (nothing is
/// committed then).
///
/// The target is validated first. The document's actor is set to `actor` (and stays so).
pub fn edit_document(
    doc: &mut Automerge,
    actor: ActorId,
    target: &Record,
    message: &str,
) -> Result<Option<Change>, DocError> {
    edit_document_over(doc, actor, None, target, message)
}

/// [`edit_document`] of a document whose JSON form is `before` (see [`write_record_over`]).
pub fn edit_document_over(
    doc: &mut Automerge,
    actor: ActorId,
    before: Option<&Json>,
    target: &Record,
    message: &str,
) -> Result<Option<Change>, DocError> {
    target.validate()?;
    doc.set_actor(actor);
    let mut tx = doc.transaction();
    write_record_over(&mut tx, target, before, Texts::Merged)?;
    if tx.pending_ops() == 0 {
        tx.rollback();
        return Ok(None);
    }
    let (hash, _) = tx.commit_with(CommitOptions::default().with_message(message));
    let Some(hash) = hash else {
        return Ok(None);
    };
    let change = doc
        .get_change_by_hash(&hash)
        .ok_or(DocError::MissingChange(hash))?;
    Ok(Some(change))
}

fn scalar_to_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Counter(c) => Json::from(i64::from(c)),
        ScalarValue::Timestamp(t) => Json::from(*t),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Bytes(b) => Json::String(hex::encode(b)),
        ScalarValue::Null | ScalarValue::Unknown { .. } => Json::Null,
    }
}

/// The scalar a JSON scalar is stored as (`None` for objects and arrays).
fn json_to_scalar(value: &Json) -> Option<ScalarValue> {
    Some(match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Array(_) | Json::Object(_) => return None,
    })
}

fn is_text_field(key: &str) -> bool {
    TEXT_FIELDS.contains(&key)
}

/// Makes the map `obj` equal to `target`; `before`: `obj`'s JSON form in the document, if
/// known (its keys are the map's, and those whose values are the same in `target` are left
/// alone).
fn reconcile_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    target: &Map<String, Json>,
    ctx: Ctx,
    before: Option<&Map<String, Json>>,
) -> Result<(), DocError> {
    if !ctx.fresh {
        // The keys the map holds: `before`'s when it is known.
        let stale: Vec<String> = match before {
            Some(before) => before
                .keys()
                .filter(|k| !target.contains_key(*k))
                .cloned()
                .collect(),
            None => tx.keys(obj).filter(|k| !target.contains_key(k)).collect(),
        };
        for key in stale {
            tx.delete(obj, key)?;
        }
    }
    for (key, value) in target {
        let was = before.and_then(|b| b.get(key));
        if was == Some(value) {
            continue;
        }
        update_slot(
            tx,
            obj,
            Prop::Map(key.clone()),
            is_text_field(key),
            value,
            ctx,
            was,
        )?;
    }
    Ok(())
}

/// Makes the value at `prop` of `obj` (an existing map key or list index, or a missing map key)
/// equal to `target`, reusing the object that is there when it has the right type. `text`: the
/// value is under one of the [`TEXT_FIELDS`] keys. `before`: the value's JSON form in the
/// document (exactly, see [`write_record_over`]), if known.
fn update_slot<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    text: bool,
    target: &Json,
    ctx: Ctx,
    before: Option<&Json>,
) -> Result<(), DocError> {
    let current = if ctx.fresh {
        None
    } else {
        tx.get(obj, prop.clone())?
            .map(|(value, id)| (value.into_owned(), id))
    };
    match target {
        Json::Object(map) => match current {
            Some((Value::Object(ObjType::Map), id)) => {
                reconcile_map(tx, &id, map, ctx, before.and_then(Json::as_object))
            }
            _ => {
                let id = tx.put_object(obj, prop, ObjType::Map)?;
                reconcile_map(tx, &id, map, ctx.fresh(), None)
            }
        },
        Json::Array(items) => match current {
            Some((Value::Object(ObjType::List), id)) => {
                reconcile_list(tx, &id, items, ctx, before.and_then(Json::as_array))
            }
            _ => {
                let id = tx.put_object(obj, prop, ObjType::List)?;
                reconcile_list(tx, &id, items, ctx.fresh(), None)
            }
        },
        Json::String(s) if text => {
            match current {
                Some((Value::Object(ObjType::Text), id)) => {
                    // A known `before` differs (else this slot is not written): no read.
                    if matches!(before, Some(Json::String(_))) || tx.text(&id)? != *s {
                        tx.update_text(&id, s)?;
                    }
                }
                // A plain string (a bulk-loaded record) stays one until it is edited.
                Some((Value::Scalar(have), _)) if matches!(&*have, ScalarValue::Str(h) if h.as_str() == s.as_str()) =>
                    {}
                _ if ctx.texts == Texts::Plain => {
                    tx.put(obj, prop, ScalarValue::Str(s.as_str().into()))?;
                }
                _ => {
                    let id = tx.put_object(obj, prop, ObjType::Text)?;
                    if !s.is_empty() {
                        tx.splice_text(&id, 0, 0, s)?;
                    }
                }
            }
            Ok(())
        }
        scalar => {
            let Some(want) = json_to_scalar(scalar) else {
                return Ok(());
            };
            if let Some((Value::Scalar(have), _)) = &current
                && **have == want
            {
                return Ok(());
            }
            tx.put(obj, prop, want)?;
            Ok(())
        }
    }
}

/// Inserts a new element equal to `target` at `index` of the list `list`.
fn insert_new<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    index: usize,
    target: &Json,
    ctx: Ctx,
) -> Result<(), DocError> {
    match target {
        Json::Object(map) => {
            let id = tx.insert_object(list, index, ObjType::Map)?;
            reconcile_map(tx, &id, map, ctx.fresh(), None)
        }
        Json::Array(items) => {
            let id = tx.insert_object(list, index, ObjType::List)?;
            reconcile_list(tx, &id, items, ctx.fresh(), None)
        }
        scalar => {
            if let Some(value) = json_to_scalar(scalar) {
                tx.insert(list, index, value)?;
            }
            Ok(())
        }
    }
}

/// The identity key of the objects in `target`: the first of [`IDENTITY_KEYS`] that every object
/// has.
fn identity_key(target: &[Json]) -> Option<&'static str> {
    let objects: Vec<&Map<String, Json>> = target.iter().filter_map(Json::as_object).collect();
    if objects.is_empty() {
        return None;
    }
    IDENTITY_KEYS
        .iter()
        .copied()
        .find(|key| objects.iter().all(|o| o.contains_key(*key)))
}

/// The longest list whose elements [`reconcile_list`] pairs with the record read before (a
/// search per element).
const MAX_PAIRED_ELEMENTS: usize = 256;

/// What a target element is matched by.
fn target_identity(value: &Json, key: Option<&str>) -> Json {
    if let (Json::Object(map), Some(key)) = (value, key)
        && let Some(id) = map.get(key)
    {
        return id.clone();
    }
    value.clone()
}

/// What the current element at `index` is matched by (`None`: matches nothing).
fn current_identity<T: Transactable>(
    tx: &T,
    list: &ObjId,
    index: usize,
    key: Option<&str>,
) -> Result<Option<Json>, DocError> {
    let Some((value, id)) = tx.get(list, index)? else {
        return Ok(None);
    };
    Ok(match value {
        Value::Scalar(s) => Some(scalar_to_json(&s)),
        Value::Object(kind @ (ObjType::Map | ObjType::Table)) => match key {
            Some(key) => match tx.get(&id, key)? {
                Some((Value::Scalar(s), _)) => Some(scalar_to_json(&s)),
                Some((Value::Object(ObjType::Text), text)) => Some(Json::String(tx.text(&text)?)),
                _ => None,
            },
            None => Some(object_json(tx, &id, kind, None)),
        },
        Value::Object(kind) => Some(object_json(tx, &id, kind, None)),
    })
}

/// Makes the list `list` equal to `target`: keeps the longest common subsequence (by identity),
/// deletes the other current elements and inserts the other target elements in place.
/// `before`: the list's JSON form in the document, if known (a kept element whose identity is
/// unique in the list and in `before`, and whose value there is the target's, is left alone).
fn reconcile_list<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    target: &[Json],
    ctx: Ctx,
    before: Option<&Vec<Json>>,
) -> Result<(), DocError> {
    if ctx.fresh {
        for (index, value) in target.iter().enumerate() {
            insert_new(tx, list, index, value, ctx)?;
        }
        return Ok(());
    }
    let key = identity_key(target);
    let len = tx.length(list);
    if let Some(before) = before
        && edit_in_place(tx, list, target, ctx, before, key, len)?
    {
        return Ok(());
    }
    let current = (0..len)
        .map(|i| current_identity(tx, list, i, key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut wanted: Vec<Json> = target.iter().map(|v| target_identity(v, key)).collect();
    // Ranked objects (agenda items) are shown in `rank` order, not list order: once any has a
    // rank, each one found in the list stays where it is (a move changes its rank only; an item
    // without a rank keeps its place, which orders it among its like) and new ones go last.
    let ranked: Vec<Json>;
    let target = if target
        .iter()
        .any(|v| v.as_object().is_some_and(|o| o.contains_key(RANK_KEY)))
    {
        let at = |w: &Json| {
            current
                .iter()
                .position(|c| c.as_ref() == Some(w))
                .unwrap_or(usize::MAX)
        };
        let mut order: Vec<usize> = (0..target.len()).collect();
        order.sort_by_key(|&j| at(&wanted[j]));
        ranked = order.iter().map(|&j| target[j].clone()).collect();
        wanted = order.iter().map(|&j| wanted[j].clone()).collect();
        &ranked[..]
    } else {
        target
    };
    let (keep_current, keep_target) = common_subsequence(&current, &wanted);
    for i in (0..len).rev() {
        if !keep_current[i] {
            tx.delete(list, i)?;
        }
    }
    // What a kept element read as: the one element of `before` with its identity, if the list
    // holds one element with it too (the record as read may order a list otherwise than the
    // document, so elements are paired by identity, never by position). Identities are counted
    // once, by their JSON text.
    let mut paired: HashMap<String, (usize, usize, Option<&Json>)> = HashMap::new();
    if let Some(before) = before.filter(|b| b.len() <= MAX_PAIRED_ELEMENTS) {
        for c in current.iter().flatten() {
            paired.entry(c.to_string()).or_default().0 += 1;
        }
        for b in before {
            let slot = paired
                .entry(target_identity(b, key).to_string())
                .or_default();
            slot.1 += 1;
            slot.2 = Some(b);
        }
    }
    let was = |w: &Json| match paired.get(&w.to_string()) {
        Some(&(1, 1, b)) => b,
        _ => None,
    };
    // The list now holds exactly the kept elements, in order; walking the target in order, every
    // element before `index` already matches it.
    for (index, value) in target.iter().enumerate() {
        if keep_target[index] {
            let was = was(&wanted[index]);
            if was == Some(value) {
                continue;
            }
            update_slot(tx, list, Prop::Seq(index), false, value, ctx, was)?;
        } else {
            insert_new(tx, list, index, value, ctx)?;
        }
    }
    Ok(())
}

/// [`reconcile_list`] of a list whose elements the edit keeps: `target` has the elements of
/// `before` (the list as the document holds it), with the same identities in the same order,
/// each identity once. Then only the elements whose values differ are written, in place, at
/// their index in `before`, without reading any element's identity (an object lookup each,
/// costly in a document with a long history). Returns false, having written nothing, when that
/// does not hold (an element inserted, deleted or moved, a ranked list whose document order is
/// not the order it is read in): the general way then.
fn edit_in_place<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    target: &[Json],
    ctx: Ctx,
    before: &[Json],
    key: Option<&str>,
    len: usize,
) -> Result<bool, DocError> {
    if before.len() != target.len() || len != target.len() {
        return Ok(false);
    }
    let wanted: Vec<Json> = target.iter().map(|v| target_identity(v, key)).collect();
    let mut seen = HashSet::with_capacity(wanted.len());
    let same = before
        .iter()
        .zip(&wanted)
        .all(|(b, w)| target_identity(b, key) == *w && seen.insert(w.to_string()));
    if !same {
        return Ok(false);
    }
    let changed: Vec<usize> = (0..target.len())
        .filter(|&j| target[j] != before[j])
        .collect();
    for j in changed {
        // `before` is the document's list: its element `j` is the document's.
        debug_assert_eq!(
            current_identity(tx, list, j, key)?.as_ref(),
            Some(&wanted[j]),
            "`before` is not what the document holds"
        );
        update_slot(
            tx,
            list,
            Prop::Seq(j),
            false,
            &target[j],
            ctx,
            Some(&before[j]),
        )?;
    }
    Ok(true)
}

/// A longest common subsequence of `current` and `target` (a `None` in `current` matches
/// nothing), as "kept" flags for each side.
fn common_subsequence(current: &[Option<Json>], target: &[Json]) -> (Vec<bool>, Vec<bool>) {
    let (n, m) = (current.len(), target.len());
    let mut keep_current = vec![false; n];
    let mut keep_target = vec![false; m];
    let same = |i: usize, j: usize| current[i].as_ref() == Some(&target[j]);

    let mut prefix = 0;
    while prefix < n && prefix < m && same(prefix, prefix) {
        keep_current[prefix] = true;
        keep_target[prefix] = true;
        prefix += 1;
    }
    let mut suffix = 0;
    while suffix < n - prefix && suffix < m - prefix && same(n - 1 - suffix, m - 1 - suffix) {
        keep_current[n - 1 - suffix] = true;
        keep_target[m - 1 - suffix] = true;
        suffix += 1;
    }
    let (cur, tgt) = (prefix..n - suffix, prefix..m - suffix);
    let (rows, cols) = (cur.len(), tgt.len());
    if rows == 0 || cols == 0 || rows.saturating_mul(cols) > MAX_DIFF_CELLS {
        return (keep_current, keep_target);
    }
    // lcs[i][j] = LCS length of current[cur.start + i..] and target[tgt.start + j..].
    let width = cols + 1;
    let mut lcs = vec![0u32; (rows + 1) * width];
    for i in (0..rows).rev() {
        for j in (0..cols).rev() {
            lcs[i * width + j] = if same(cur.start + i, tgt.start + j) {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < rows && j < cols {
        if same(cur.start + i, tgt.start + j) {
            keep_current[cur.start + i] = true;
            keep_target[tgt.start + j] = true;
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * width + j] >= lcs[i * width + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    (keep_current, keep_target)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::tests::{BRNO, MILAN, PORTO, group, practice, project};
    use crate::record::{Agenda, Group, Item, Practice};
    use automerge::hydrate;
    use proptest::prelude::*;

    const AGENDA: &str = "3f2a9c0d1e2b4a5c";

    pub(crate) fn actor(n: u8) -> ActorId {
        ActorId::from(vec![n; 16])
    }

    /// An operation of a hand-built change, with no predecessors.
    pub(crate) fn bare_op(
        obj: automerge::legacy::ObjectId,
        key: automerge::legacy::Key,
        insert: bool,
        action: automerge::legacy::OpType,
    ) -> automerge::legacy::Op {
        automerge::legacy::Op {
            action,
            obj,
            key,
            pred: automerge::legacy::SortedVec::new(),
            insert,
        }
    }

    fn create(record: impl Into<Record>) -> Automerge {
        match new_document(actor(1), &record.into(), "create", Texts::Merged) {
            Ok((doc, _)) => doc,
            Err(e) => panic!("new_document: {e}"),
        }
    }

    fn read(doc: &Automerge) -> Record {
        match read_record(doc, None) {
            Ok(r) => r,
            Err(e) => panic!("read_record: {e}\n{:#}", to_json(doc, None)),
        }
    }

    fn edit(doc: &mut Automerge, who: u8, target: impl Into<Record>) -> Option<Change> {
        match edit_document(doc, actor(who), &target.into(), "edit") {
            Ok(c) => c,
            Err(e) => panic!("edit_document: {e}"),
        }
    }

    /// Two replicas of `base`: `a` with actor 2, `b` with actor 3.
    fn fork(base: &Automerge) -> (Automerge, Automerge) {
        let a = base.fork().with_actor(actor(2));
        let b = base.fork().with_actor(actor(3));
        (a, b)
    }

    /// Exchanges all changes between `a` and `b`; both then hold the same state.
    fn sync(a: &mut Automerge, b: &mut Automerge) {
        let to_b = a.get_changes(&[]);
        let to_a = b.get_changes(&[]);
        b.apply_changes(to_b).expect("apply a's changes to b");
        a.apply_changes(to_a).expect("apply b's changes to a");
        assert_eq!(to_json(a, None), to_json(b, None), "replicas diverge");
        let (mut ha, mut hb) = (a.get_heads(), b.get_heads());
        ha.sort();
        hb.sort();
        assert_eq!(ha, hb);
    }

    /// `p` (held by `base`) edited by `fa` on one replica and by `fb` on another, then merged.
    fn concurrently(
        base: &Automerge,
        p: &Practice,
        fa: impl FnOnce(&mut Practice),
        fb: impl FnOnce(&mut Practice),
    ) -> Practice {
        let (mut a, mut b) = fork(base);
        let (mut pa, mut pb) = (p.clone(), p.clone());
        fa(&mut pa);
        fb(&mut pb);
        edit(&mut a, 2, pa);
        edit(&mut b, 3, pb);
        sync(&mut a, &mut b);
        as_practice(read(&a))
    }

    fn agenda_of(r: &Record) -> &Agenda {
        match r {
            Record::Group(g) => &g.agendas[AGENDA],
            other => panic!("not a group: {other:?}"),
        }
    }

    fn as_group(r: Record) -> Group {
        match r {
            Record::Group(g) => g,
            other => panic!("not a group: {other:?}"),
        }
    }

    fn as_practice(r: Record) -> Practice {
        match r {
            Record::Practice(p) => p,
            other => panic!("not a practice: {other:?}"),
        }
    }

    fn item_ids(r: &Record) -> Vec<String> {
        agenda_of(r).items.iter().map(|i| i.id.clone()).collect()
    }

    fn item(id: &str, title: &str) -> Item {
        Item {
            id: id.to_string(),
            slot: String::new(),
            title: title.to_string(),
            presenters: vec![],
            notes: String::new(),
            day: String::new(),
            rank: String::new(),
        }
    }

    /// `json_after` of the city's own edits equals the whole read where the document holds
    /// conflicts: two cities add an agenda under the same key at once (two objects at one key,
    /// one shown), a member is added on one side and an item removed on the other; then edits
    /// of the shown agenda's items (after the removed one, whose index moved), of its title, of
    /// the charter (a root key) and of the members map.
    #[test]
    fn the_read_of_an_own_edit_is_the_whole_read_over_conflicts() {
        let base = create(group());
        let (mut a, mut b) = fork(&base);
        let agenda_of = |title: &str| {
            let mut ag = Agenda::new(title, "2027-05-01");
            for k in 0..4 {
                let mut item = Item::new(format!("{title} item {k}"));
                item.id = format!("{title}{k}");
                ag.items.push(item);
            }
            ag
        };
        let Record::Group(mut ga) = read(&a) else {
            panic!("a group")
        };
        ga.agendas.insert("same".into(), agenda_of("A"));
        edit(&mut a, 2, ga);
        let Record::Group(mut gb) = read(&b) else {
            panic!("a group")
        };
        gb.agendas.insert("same".into(), agenda_of("B"));
        gb.members.insert(
            PORTO.to_string(),
            crate::record::Member {
                name: "Porto".into(),
                role: crate::record::Role::Member,
            },
        );
        if let Some(ag) = gb.agendas.get_mut(AGENDA) {
            ag.items.remove(0);
        }
        edit(&mut b, 3, gb);
        sync(&mut a, &mut b);
        let edits: [fn(&mut Group); 6] = [
            |g| g.agendas.get_mut("same").expect("shown").items[2].notes = "n".into(),
            |g| {
                let ag = g.agendas.get_mut(AGENDA).expect("agenda");
                let last = ag.items.len() - 1;
                ag.items[last].notes = "after the removed one".into();
            },
            |g| g.agendas.get_mut("same").expect("shown").title = "Renamed".into(),
            |g| g.charter = "A new charter.".into(),
            |g| {
                g.members.remove(PORTO);
            },
            |g| {
                g.agendas.remove("same");
            },
        ];
        for (n, change_it) in edits.iter().enumerate() {
            let before = read(&a);
            let Record::Group(mut target) = before.clone() else {
                panic!("a group")
            };
            change_it(&mut target);
            let json_before = to_json(&a, None);
            let change =
                edit_document_over(&mut a, actor(2), Some(&json_before), &target.into(), "e")
                    .expect("edit")
                    .expect("a change");
            assert_eq!(
                json_after(&a, &json_before, &change),
                Some(to_json(&a, None)),
                "edit {n}"
            );
        }
    }

    /// Gives the test agenda's items ranks, as the CLI does before it moves or inserts.
    fn with_ranks(g: &mut Group) {
        if let Some(ag) = g.agendas.get_mut(AGENDA) {
            ag.rerank();
        }
    }

    fn with_agenda(g: &Group, f: impl FnOnce(&mut Agenda)) -> Group {
        let mut g = g.clone();
        if let Some(a) = g.agendas.get_mut(AGENDA) {
            f(a);
        }
        g
    }

    #[test]
    fn round_trip_all_kinds() {
        for record in [
            Record::from(practice()),
            Record::from(project()),
            Record::from(group()),
        ] {
            let (doc, change) =
                new_document(actor(1), &record, "create", Texts::Merged).expect("create");
            assert_eq!(change.message(), Some("create"));
            assert_eq!(change.actor_id(), &actor(1));
            assert_eq!(read(&doc), record);
            assert_eq!(to_json(&doc, None), record.to_json());
            // The change alone rebuilds the document.
            let mut other = Automerge::new();
            other.apply_changes([change]).expect("apply");
            assert_eq!(read(&other), record);
        }
    }

    #[test]
    fn text_fields_are_text_and_others_scalars() {
        let doc = create(group());
        let (v, _) = doc.get(ROOT, "charter").expect("get").expect("charter");
        assert_eq!(v, Value::Object(ObjType::Text));
        let (v, _) = doc.get(ROOT, "name").expect("get").expect("name");
        assert!(matches!(v, Value::Scalar(_)), "group name is a scalar");
        let (_, agendas) = doc.get(ROOT, "agendas").expect("get").expect("agendas");
        let (_, agenda) = doc.get(&agendas, AGENDA).expect("get").expect("agenda");
        let (v, _) = doc.get(&agenda, "title").expect("get").expect("title");
        assert_eq!(v, Value::Object(ObjType::Text));
        let (v, _) = doc.get(&agenda, "start").expect("get").expect("start");
        assert!(matches!(v, Value::Scalar(_)), "dates are scalars");
        let doc = create(project());
        let (v, _) = doc.get(ROOT, "budget_eur").expect("get").expect("budget");
        assert_eq!(
            v,
            Value::Scalar(std::borrow::Cow::Owned(ScalarValue::Uint(1_250_000)))
        );
    }

    #[test]
    fn read_at_heads() {
        let mut doc = create(practice());
        let heads = doc.get_heads();
        let mut p = practice();
        p.title = "FabriQ 2.0".into();
        edit(&mut doc, 1, p.clone());
        assert_eq!(
            read_record(&doc, Some(&heads)),
            Ok(Record::from(practice()))
        );
        assert_eq!(read(&doc), Record::from(p));
    }

    #[test]
    fn unchanged_edit_produces_no_change() {
        for record in [
            Record::from(practice()),
            Record::from(project()),
            Record::from(group()),
        ] {
            let mut doc = create(record.clone());
            let heads = doc.get_heads();
            assert!(edit(&mut doc, 2, record).is_none());
            assert_eq!(doc.get_heads(), heads, "nothing committed");
        }
    }

    #[test]
    fn edits_use_few_operations() {
        let mut doc = create(practice());
        let mut p = practice();
        p.themes.push("crafts".into());
        let c = edit(&mut doc, 1, p.clone()).expect("change");
        assert_eq!(c.len(), 1, "appending a theme is one insert");
        p.title.push('!');
        let c = edit(&mut doc, 1, p.clone()).expect("change");
        assert_eq!(c.len(), 1, "appending a character is one insert");
        p.city = "Milano".into();
        let c = edit(&mut doc, 1, p.clone()).expect("change");
        assert_eq!(c.len(), 1, "setting a scalar is one put");
        p.contact = None;
        let c = edit(&mut doc, 1, p.clone()).expect("change");
        assert_eq!(c.len(), 1, "clearing an optional field is one delete");
        p.themes.remove(0);
        let c = edit(&mut doc, 1, p.clone()).expect("change");
        assert_eq!(c.len(), 1, "removing a theme is one delete");
        p.partners[1].sector = crate::record::Sector::University;
        let c = edit(&mut doc, 1, p.clone()).expect("change");
        assert_eq!(c.len(), 1, "changing a partner's sector is one put");
        assert_eq!(read(&doc), Record::from(p));
    }

    #[test]
    fn invalid_records_are_refused() {
        let mut p = practice();
        p.title.clear();
        assert!(matches!(
            new_document(actor(1), &Record::from(p.clone()), "x", Texts::Merged),
            Err(DocError::Record(RecordError::Missing { .. }))
        ));
        let mut doc = create(practice());
        assert!(matches!(
            edit_document(&mut doc, actor(1), &Record::from(p), "x"),
            Err(DocError::Record(RecordError::Missing { .. }))
        ));
        assert_eq!(read(&doc), Record::from(practice()));
    }

    #[test]
    fn switching_kind_rewrites_the_root() {
        let mut doc = create(practice());
        edit(&mut doc, 1, project());
        assert_eq!(read(&doc), Record::from(project()));
    }

    #[test]
    fn concurrent_item_additions_keep_both_in_the_same_order() {
        let g = group();
        let base = create(g.clone());
        let (mut a, mut b) = fork(&base);
        edit(
            &mut a,
            2,
            with_agenda(&g, |ag| ag.items.push(item("x1", "Civic crowdfunding"))),
        );
        edit(
            &mut b,
            3,
            with_agenda(&g, |ag| {
                ag.items.push(item("y1", "Social entrepreneurship"))
            }),
        );
        sync(&mut a, &mut b);
        let ids = item_ids(&read(&a));
        assert_eq!(ids.len(), 5);
        assert_eq!(&ids[..3], ["a1", "a2", "a3"]);
        assert!(ids.contains(&"x1".to_string()) && ids.contains(&"y1".to_string()));
        assert_eq!(read(&a), read(&b));

        // Insertions at the same place in the middle also both survive.
        let (mut a, mut b) = fork(&base);
        edit(
            &mut a,
            2,
            with_agenda(&g, |ag| ag.items.insert(1, item("x2", "Makerspace"))),
        );
        edit(
            &mut b,
            3,
            with_agenda(&g, |ag| ag.items.insert(1, item("y2", "FabLab"))),
        );
        sync(&mut a, &mut b);
        let ids = item_ids(&read(&b));
        assert_eq!(ids.len(), 5);
        assert_eq!(
            (ids[0].as_str(), ids[3].as_str(), ids[4].as_str()),
            ("a1", "a2", "a3")
        );
        assert_eq!(read(&a), read(&b));
    }

    #[test]
    fn concurrent_text_edits_merge_character_wise() {
        let mut p = practice();
        p.summary = "Smart social inclusion in".into();
        let merged = concurrently(
            &create(p.clone()),
            &p,
            |p| p.summary.push_str(" Milan"),
            |p| p.summary.insert_str(0, "New: "),
        );
        assert_eq!(merged.summary, "New: Smart social inclusion in Milan");
    }

    /// The JSON form of a hydrated value: what `to_json` gave before it read documents directly.
    fn hydrated_to_json(value: &hydrate::Value) -> Json {
        match value {
            hydrate::Value::Map(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), hydrated_to_json(&v.value)))
                    .collect(),
            ),
            hydrate::Value::List(list) => {
                Json::Array(list.iter().map(|v| hydrated_to_json(&v.value)).collect())
            }
            hydrate::Value::Text(text) => Json::String(text.to_string()),
            hydrate::Value::Scalar(s) => scalar_to_json(s),
        }
    }

    #[test]
    fn the_direct_reader_gives_what_hydrate_gives() {
        let g = group();
        let mut doc = create(g.clone());
        let first = doc.get_heads();
        edit(
            &mut doc,
            2,
            with_agenda(&g, |ag| ag.items.push(item("x1", "Civic crowdfunding"))),
        );
        let (plain, _) =
            new_document(actor(1), &practice().into(), "import", Texts::Plain).expect("plain");
        for (d, heads) in [
            (&doc, None),
            (&doc, Some(first.as_slice())),
            (&create(practice()), None),
            (&create(project()), None),
            (&plain, None),
        ] {
            assert_eq!(to_json(d, heads), hydrated_to_json(&d.hydrate(heads)));
        }
    }

    #[test]
    fn plain_texts_become_text_objects_on_their_first_edit() {
        let mut p = practice();
        p.summary = "Smart social inclusion in".into();
        let (mut doc, _) =
            new_document(actor(1), &Record::from(p.clone()), "import", Texts::Plain).expect("new");
        let kind = |doc: &Automerge, key: &str| {
            doc.get(ROOT, key)
                .expect("get")
                .map(|(v, _)| v.into_owned())
        };
        assert!(matches!(kind(&doc, "summary"), Some(Value::Scalar(_))));
        assert!(matches!(kind(&doc, "title"), Some(Value::Scalar(_))));
        assert_eq!(read(&doc), Record::from(p.clone()));
        // An edit of another field leaves the plain strings alone.
        p.themes.push("youth".into());
        edit(&mut doc, 1, p.clone());
        assert!(matches!(kind(&doc, "summary"), Some(Value::Scalar(_))));
        // The first edit of a field makes it text; from then on edits merge character-wise.
        p.summary.push_str(" Brno");
        edit(&mut doc, 1, p.clone());
        assert_eq!(kind(&doc, "summary"), Some(Value::Object(ObjType::Text)));
        assert!(matches!(kind(&doc, "title"), Some(Value::Scalar(_))));
        let merged = concurrently(
            &doc,
            &p,
            |p| p.summary.push_str(" and Milan"),
            |p| p.summary.insert_str(0, "New: "),
        );
        assert_eq!(
            merged.summary,
            "New: Smart social inclusion in Brno and Milan"
        );
        // Two concurrent first edits of a plain field: one of the two values wins, everywhere.
        let merged = concurrently(
            &doc,
            &p,
            |p| p.title = "Title from A".into(),
            |p| p.title = "Title from B".into(),
        );
        let title = merged.title;
        assert!(
            title == "Title from A" || title == "Title from B",
            "{title}"
        );
    }

    #[test]
    fn concurrent_theme_additions_keep_both() {
        let p = practice();
        let base = create(p.clone());
        let (mut a, mut b) = fork(&base);
        let mut pa = p.clone();
        pa.themes.push("digital manufacturing".into());
        let mut pb = p.clone();
        pb.themes.push("crowdfunding".into());
        pb.themes.remove(0);
        edit(&mut a, 2, pa);
        edit(&mut b, 3, pb);
        sync(&mut a, &mut b);
        let themes = as_practice(read(&a)).themes;
        assert_eq!(themes.len(), 3, "{themes:?}");
        assert_eq!(themes[0], "incubation", "b's removal took effect");
        assert!(themes.contains(&"digital manufacturing".to_string()));
        assert!(themes.contains(&"crowdfunding".to_string()));
    }

    #[test]
    fn scalar_fields_are_last_writer_wins_by_op_id() {
        let g = group();
        let base = create(g.clone());
        let (mut a, mut b) = fork(&base);
        edit(
            &mut a,
            2,
            with_agenda(&g, |ag| ag.venue = "Base Milano".into()),
        );
        edit(
            &mut b,
            3,
            with_agenda(&g, |ag| ag.venue = "Fabbrica del Vapore".into()),
        );
        sync(&mut a, &mut b);
        // Same op counter on both sides: the greater actor id (b, actor 3) wins, everywhere.
        assert_eq!(agenda_of(&read(&a)).venue, "Fabbrica del Vapore");
        assert_eq!(agenda_of(&read(&b)).venue, "Fabbrica del Vapore");
    }

    #[test]
    fn delete_beats_concurrent_edit() {
        let g = group();
        let base = create(g.clone());
        let (mut a, mut b) = fork(&base);
        edit(
            &mut a,
            2,
            with_agenda(&g, |ag| {
                ag.items.remove(1);
            }),
        );
        edit(
            &mut b,
            3,
            with_agenda(&g, |ag| {
                ag.items[1].title = "OpenCare: participatory care".into();
                ag.items[1].slot = "11:00-12:00".into();
            }),
        );
        sync(&mut a, &mut b);
        let r = read(&a);
        assert_eq!(item_ids(&r), ["a1", "a3"], "the edited item stays deleted");
        assert_eq!(
            r,
            Record::from(with_agenda(&g, |ag| {
                ag.items.remove(1);
            }))
        );
    }

    #[test]
    fn move_loses_a_concurrent_edit() {
        let g = group();
        let base = create(g.clone());
        let (mut a, mut b) = fork(&base);
        edit(
            &mut a,
            2,
            with_agenda(&g, |ag| {
                let moved = ag.items.remove(2);
                ag.items.insert(0, moved);
            }),
        );
        edit(
            &mut b,
            3,
            with_agenda(&g, |ag| ag.items[2].title = "FabriQ incubator".into()),
        );
        sync(&mut a, &mut b);
        let r = read(&a);
        assert_eq!(item_ids(&r), ["a3", "a1", "a2"], "the move took effect");
        assert_eq!(
            agenda_of(&r).items[0].title,
            "FabriQ",
            "the concurrent edit is lost"
        );
    }

    #[test]
    fn unranked_concurrent_moves_copy_an_item_that_the_next_edit_drops() {
        // Items without ranks (an older version's edits): a move deletes and re-inserts, so two
        // concurrent moves leave two copies in the document (the merged state, which no single
        // change holds, so no change is invalid for it).
        let g = group();
        let base = create(g.clone());
        let (mut a, mut b) = fork(&base);
        let move_third_first = |ag: &mut Agenda| {
            let moved = ag.items.remove(2);
            ag.items.insert(0, moved);
        };
        edit(&mut a, 2, with_agenda(&g, move_third_first));
        edit(&mut b, 3, with_agenda(&g, move_third_first));
        sync(&mut a, &mut b);
        let raw = to_json(&a, None);
        let copies = raw["agendas"][AGENDA]["items"]
            .as_array()
            .map_or(0, |items| items.iter().filter(|i| i["id"] == "a3").count());
        assert_eq!(copies, 2, "{raw}");
        assert_eq!(item_ids(&read(&a)), ["a3", "a3", "a1", "a2"]);
        // A writer drops the copy before it signs: the extra copy is gone.
        let mut fixed = as_group(read(&a));
        if let Some(ag) = fixed.agendas.get_mut(AGENDA) {
            ag.dedupe_items();
        }
        edit(&mut a, 2, fixed.clone());
        let raw = to_json(&a, None);
        assert_eq!(
            raw["agendas"][AGENDA]["items"].as_array().map(Vec::len),
            Some(3)
        );
        assert_eq!(read(&a), Record::from(fixed));
    }

    #[test]
    fn ranked_moves_keep_each_item_once_and_keep_concurrent_edits() {
        let mut g = group();
        with_ranks(&mut g);
        let base = create(g.clone());
        // Two cities move the same item, to different places, while a third edits it.
        let (mut a, mut b) = fork(&base);
        let mut c = base.fork().with_actor(actor(4));
        edit(&mut a, 2, with_agenda(&g, |ag| ag.move_item(2, 0)));
        edit(&mut b, 3, with_agenda(&g, |ag| ag.move_item(2, 1)));
        edit(
            &mut c,
            4,
            with_agenda(&g, |ag| ag.items[2].title = "FabriQ incubator".into()),
        );
        sync(&mut a, &mut b);
        sync(&mut a, &mut c);
        sync(&mut b, &mut c);
        let r = read(&a);
        let ids = item_ids(&r);
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(
            ids == ["a3", "a1", "a2"] || ids == ["a1", "a3", "a2"],
            "{ids:?}"
        );
        let moved = agenda_of(&r).items.iter().find(|i| i.id == "a3");
        assert_eq!(
            moved.map(|i| i.title.as_str()),
            Some("FabriQ incubator"),
            "the concurrent edit is kept"
        );
        assert_eq!(read(&b), r);
        assert_eq!(read(&c), r);
        // A ranked move is one scalar: the items stay where they are in the list.
        let raw = to_json(&a, None);
        let in_list: Vec<&str> = raw["agendas"][AGENDA]["items"]
            .as_array()
            .map(|items| items.iter().filter_map(|i| i["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(in_list, ["a1", "a2", "a3"]);
    }

    #[test]
    fn concurrent_inserts_at_one_place_keep_both_in_one_order() {
        let mut g = group();
        with_ranks(&mut g);
        let base = create(g.clone());
        let (mut a, mut b) = fork(&base);
        edit(
            &mut a,
            2,
            with_agenda(&g, |ag| ag.insert_item(1, item("x", "Makerspace"))),
        );
        edit(
            &mut b,
            3,
            with_agenda(&g, |ag| ag.insert_item(1, item("y", "FabLab"))),
        );
        sync(&mut a, &mut b);
        let ids = item_ids(&read(&a));
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert_eq!(
            (ids[0].as_str(), ids[3].as_str(), ids[4].as_str()),
            ("a1", "a2", "a3")
        );
        assert_eq!(read(&a), read(&b));
        // Equal ranks: the next insertion between them ranks the agenda again.
        let mut next = as_group(read(&a));
        if let Some(ag) = next.agendas.get_mut(AGENDA) {
            ag.insert_item(2, item("z", "Lunch"));
        }
        edit(&mut a, 2, next.clone());
        let after = item_ids(&read(&a));
        assert_eq!(after[2], "z", "{after:?}");
        assert_eq!(read(&a), Record::from(next));
    }

    #[test]
    fn concurrent_member_and_agenda_changes_merge() {
        let g = group();
        let base = create(g.clone());
        let (mut a, mut b) = fork(&base);
        let mut ga = g.clone();
        ga.members.insert(
            PORTO.to_string(),
            crate::record::Member {
                name: "Porto".into(),
                role: crate::record::Role::Member,
            },
        );
        let mut gb = g.clone();
        gb.agendas.insert(
            "b0b0b0b0b0b0b0b0".into(),
            Agenda::new("Next meeting", "2017-06-01"),
        );
        gb.members.remove(BRNO);
        edit(&mut a, 2, ga);
        edit(&mut b, 3, gb);
        sync(&mut a, &mut b);
        let merged = as_group(read(&a));
        assert!(merged.members.contains_key(PORTO) && merged.members.contains_key(MILAN));
        assert!(!merged.members.contains_key(BRNO));
        assert_eq!(merged.agendas.len(), 2);
    }

    #[test]
    fn field_changes_name_each_field_with_its_values() {
        let g = group();
        let mut edited = g.clone();
        if let Some(ag) = edited.agendas.get_mut(AGENDA) {
            ag.venue = "FabriQ".into();
            ag.items[1].title = "OpenCare: participatory care".into();
            ag.items.remove(2);
            ag.attendees.push("Utrecht".into());
        }
        let changes = field_changes(&Record::from(g).to_json(), &Record::from(edited).to_json());
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        let base = format!("agendas.{AGENDA}");
        assert_eq!(
            paths,
            [
                format!("{base}.attendees"),
                format!("{base}.items[a2].title"),
                format!("{base}.items[a3]"),
                format!("{base}.venue"),
            ]
        );
        assert_eq!(changes[1].before, Some(Json::from("OpenCare")));
        assert_eq!(
            changes[1].after,
            Some(Json::from("OpenCare: participatory care"))
        );
        assert_eq!(changes[2].after, None, "removed");
        assert_eq!(changes[3].before, Some(Json::from("Palazzo Marino")));
        assert!(field_changes(&Json::Null, &Json::Null).is_empty());
        // A record's creation names each agenda it creates.
        let created = field_changes(&serde_json::json!({}), &Record::from(group()).to_json());
        assert!(
            created
                .iter()
                .any(|c| c.path == format!("agendas.{AGENDA}") && c.before.is_none()),
            "{created:?}"
        );
    }

    #[test]
    fn lcs_keeps_the_longest_common_run() {
        let s = |v: &[&str]| -> Vec<Json> { v.iter().map(|x| Json::from(*x)).collect() };
        let cur: Vec<Option<Json>> = s(&["a", "b", "c", "d"]).into_iter().map(Some).collect();
        let (kc, kt) = common_subsequence(&cur, &s(&["b", "x", "c", "d", "a"]));
        assert_eq!(kc, [false, true, true, true]);
        assert_eq!(kt, [true, false, true, true, false]);
        let (kc, kt) = common_subsequence(&[None, Some(Json::from("a"))], &s(&["a"]));
        assert_eq!((kc, kt), (vec![false, true], vec![true]));
        let (kc, kt) = common_subsequence(&[], &s(&["a"]));
        assert_eq!((kc, kt), (vec![], vec![false]));
    }

    #[test]
    fn scalars_convert_to_json() {
        assert_eq!(
            scalar_to_json(&ScalarValue::Bytes(vec![0xab, 0x01])),
            Json::from("ab01")
        );
        assert_eq!(scalar_to_json(&ScalarValue::Timestamp(7)), Json::from(7));
        assert_eq!(scalar_to_json(&ScalarValue::counter(3)), Json::from(3));
        assert_eq!(scalar_to_json(&ScalarValue::F64(f64::NAN)), Json::Null);
        assert_eq!(scalar_to_json(&ScalarValue::Int(-2)), Json::from(-2));
        assert_eq!(scalar_to_json(&ScalarValue::Null), Json::Null);
        assert_eq!(json_to_scalar(&Json::from(-2)), Some(ScalarValue::Int(-2)));
        assert_eq!(
            json_to_scalar(&Json::from(2.5)),
            Some(ScalarValue::F64(2.5))
        );
        assert_eq!(
            json_to_scalar(&Json::from(true)),
            Some(ScalarValue::Boolean(true))
        );
    }

    /// An edit of an agenda's item list.
    #[derive(Debug, Clone)]
    enum Op {
        Add { at: usize, title: String },
        Remove { at: usize },
        Move { from: usize, to: usize },
        Retitle { at: usize, title: String },
        Present { at: usize, who: String },
    }

    fn op() -> impl Strategy<Value = Op> {
        let title = "[a-zA-Z][a-zA-Z ]{0,11}";
        prop_oneof![
            (any::<usize>(), title).prop_map(|(at, title)| Op::Add { at, title }),
            any::<usize>().prop_map(|at| Op::Remove { at }),
            (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Op::Move { from, to }),
            (any::<usize>(), title).prop_map(|(at, title)| Op::Retitle { at, title }),
            (any::<usize>(), "(Milan|Brno|Riga)").prop_map(|(at, who)| Op::Present { at, who }),
        ]
    }

    fn apply(items: &mut Vec<Item>, op: &Op, next_id: &mut u32) {
        let n = items.len();
        match op {
            Op::Add { at, title } => {
                *next_id += 1;
                items.insert(at % (n + 1), item(&format!("i{next_id}"), title));
            }
            Op::Remove { at } if n > 0 => {
                items.remove(at % n);
            }
            Op::Move { from, to } if n > 0 => {
                let moved = items.remove(from % n);
                items.insert(to % n, moved);
            }
            Op::Retitle { at, title } if n > 0 => items[at % n].title = title.clone(),
            Op::Present { at, who } if n > 0 => items[at % n].presenters.push(who.clone()),
            _ => {}
        }
    }

    /// [`apply`] through the ranked agenda operations the CLI uses.
    fn ranked_apply(ag: &mut Agenda, op: &Op, next_id: &mut u32) {
        let n = ag.items.len();
        match op {
            Op::Add { at, title } => {
                *next_id += 1;
                ag.insert_item(at % (n + 1), item(&format!("i{next_id}"), title));
            }
            Op::Move { from, to } if n > 0 => ag.move_item(from % n, to % n),
            other => apply(&mut ag.items, other, next_id),
        }
    }

    /// The document an empty document becomes by applying `change` with Automerge.
    fn applied(change: &Change) -> Automerge {
        let mut doc = Automerge::new();
        doc.apply_changes([change.clone()]).expect("apply");
        doc
    }

    #[test]
    fn genesis_json_reads_what_automerge_applies() {
        let mut p = practice();
        p.summary = "Şehir — 城市 🏙️ with emoji and combining e\u{301}".into();
        let mut translated = p.clone();
        translated.translations.insert(
            "en".into(),
            crate::record::Translation {
                title: "Civic crowdfunding".into(),
                summary: "The city doubles what citizens give.".into(),
            },
        );
        let records: Vec<Record> = vec![
            p.into(),
            translated.into(),
            project().into(),
            group().into(),
        ];
        for record in &records {
            for texts in [Texts::Merged, Texts::Plain] {
                let (doc, change) = new_document(actor(1), record, "create", texts).expect("new");
                let fast = genesis_json(&change).expect("a plain genesis change");
                let read = crate::chunk::genesis_ops(change.raw_bytes());
                assert_eq!(read, decoded_genesis_ops(&change.decode()), "{texts:?}");
                assert!(read.is_some(), "read from the chunk");
                assert_eq!(fast, to_json(&applied(&change), None), "{texts:?}");
                assert_eq!(fast, to_json(&doc, None));
            }
            // The direct builder makes the very change `new_document` makes with plain texts.
            let built = new_plain_change(actor(1), record, "create").expect("build");
            let (_, reference) =
                new_document(actor(1), record, "create", Texts::Plain).expect("new");
            assert_eq!(built.raw_bytes(), reference.raw_bytes());
            // Stored as its bytes, a genesis change loads as the document.
            let loaded = Automerge::load(built.raw_bytes()).expect("load a change chunk");
            assert_eq!(to_json(&loaded, None), to_json(&applied(&built), None));
        }
        // A change may travel compressed (a large one, as Automerge encodes it): it reads and
        // loads the same.
        let mut big = practice();
        big.body = "A long description of the practice. ".repeat(200);
        let mut change = new_plain_change(actor(1), &big.into(), "create").expect("build");
        let compressed = change.bytes().to_vec();
        assert!(
            compressed.len() < change.raw_bytes().len(),
            "not compressed"
        );
        let received = Change::from_bytes(compressed.clone()).expect("decode");
        let expected = to_json(&applied(&change), None);
        assert_eq!(genesis_json(&received), Some(expected.clone()));
        let loaded = Automerge::load(&compressed).expect("load a compressed change");
        assert_eq!(to_json(&loaded, None), expected);
    }

    #[test]
    fn genesis_json_orders_concurrent_inserts_and_refuses_what_it_does_not_model() {
        use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType};
        let a = actor(1);
        let op = bare_op;
        let change = |ops: Vec<Op>, deps: Vec<ChangeHash>| {
            Change::from(automerge::ExpandedChange {
                operations: ops,
                actor_id: a.clone(),
                hash: None,
                seq: 1,
                start_op: std::num::NonZeroU64::MIN,
                time: 0,
                message: None,
                deps,
                extra_bytes: Vec::new(),
                author: None,
            })
        };
        let list = ObjectId::Id(OpId::new(1, &a));
        let elem = |n: u64| Key::Seq(ElementId::Id(OpId::new(n, &a)));
        let put = |v: &str| OpType::Put(ScalarValue::Str(v.into()));
        // Several elements inserted at the head and after one element: Automerge orders
        // siblings newest first.
        let ops = vec![
            op(
                ObjectId::Root,
                Key::Map("l".into()),
                false,
                OpType::Make(ObjType::List),
            ),
            op(list.clone(), Key::head(), true, put("a")),
            op(list.clone(), Key::head(), true, put("b")),
            op(list.clone(), elem(2), true, put("c")),
            op(list.clone(), elem(2), true, put("d")),
            op(list.clone(), elem(4), true, put("e")),
            op(list.clone(), Key::head(), true, OpType::Make(ObjType::Map)),
            op(
                ObjectId::Id(OpId::new(7, &a)),
                Key::Map("k".into()),
                false,
                put("v"),
            ),
        ];
        let c = change(ops.clone(), Vec::new());
        let fast = genesis_json(&c).expect("models inserts");
        assert_eq!(fast, to_json(&applied(&c), None));
        assert_eq!(fast["l"].as_array().map(Vec::len), Some(6));
        // What it does not model: it declines, and Automerge decides.
        let mut dup = ops.clone();
        dup.push(op(ObjectId::Root, Key::Map("l".into()), false, put("x")));
        let mut del = ops.clone();
        del.push(op(list.clone(), elem(3), false, OpType::Delete));
        let mut unknown = ops.clone();
        unknown.push(op(list.clone(), elem(99), true, put("x")));
        let mut inc = ops.clone();
        inc.push(op(
            ObjectId::Root,
            Key::Map("n".into()),
            false,
            OpType::Increment(1),
        ));
        for bad in [dup, del, unknown, inc] {
            assert_eq!(genesis_json(&change(bad, Vec::new())), None);
        }
        let dependent = change(ops, vec![c.hash()]);
        assert_eq!(genesis_json(&dependent), None);
        // A wrong checksum: Automerge applies such a change but would not load its bytes, so
        // the reader declines it (and the caller stores a saved document instead).
        let mut bytes = c.raw_bytes().to_vec();
        bytes[4] ^= 1;
        let bad = Change::from_bytes(bytes.clone()).expect("decoding ignores the checksum");
        assert_eq!(genesis_json(&bad), None);
        assert!(Automerge::load(&bytes).is_err());
        assert!(Automerge::load(&applied(&bad).save_nocompress()).is_ok());
        // Maps nested 5,000 deep: declined by the reader, and read by `to_json` down to a
        // bounded depth instead of exhausting the stack.
        let mut deep = Vec::new();
        let mut parent = ObjectId::Root;
        for n in 1..=5_000u64 {
            deep.push(op(
                parent,
                Key::Map("m".into()),
                false,
                OpType::Make(ObjType::Map),
            ));
            parent = ObjectId::Id(OpId::new(n, &a));
        }
        let deep = change(deep, Vec::new());
        assert_eq!(genesis_json(&deep), None);
        let json = to_json(&applied(&deep), None);
        let mut depth = 0;
        let mut at = &json;
        while let Some(next) = at.get("m") {
            depth += 1;
            at = next;
        }
        assert_eq!(depth, MAX_JSON_DEPTH);
    }

    /// An operation that makes an object of `kind` at the root's `key`, for changes built by
    /// hand.
    fn make_at_root(key: &str, kind: ObjType) -> automerge::legacy::Op {
        use automerge::legacy::{Key, ObjectId, Op, OpType, SortedVec};
        Op {
            action: OpType::Make(kind),
            obj: ObjectId::Root,
            key: Key::Map(key.into()),
            pred: SortedVec::new(),
            insert: false,
        }
    }

    /// The genesis change of `ops` by actor 1.
    pub(crate) fn genesis_of(ops: Vec<automerge::legacy::Op>) -> Change {
        Change::from(automerge::ExpandedChange {
            operations: ops,
            actor_id: actor(1),
            hash: None,
            seq: 1,
            start_op: std::num::NonZeroU64::MIN,
            time: 0,
            message: None,
            deps: Vec::new(),
            extra_bytes: Vec::new(),
            author: None,
        })
    }

    /// A genesis change whose ops make a list (`l`) and a text (`t`) at the root, then insert
    /// into them: `(text, after)` inserts into the text or the list, after the element made
    /// by the `after`-th insert into it so far (modulo their number), or at the head (`None`).
    fn inserting_change(inserts: &[(bool, Option<usize>)]) -> Change {
        use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
        let a = actor(1);
        let mut ops = vec![
            make_at_root("l", ObjType::List),
            make_at_root("t", ObjType::Text),
        ];
        let mut made: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for (text, after) in inserts {
            let seq = usize::from(*text);
            let counter = ops.len() as u64 + 1;
            let elem = match after {
                Some(n) if !made[seq].is_empty() => {
                    ElementId::Id(OpId::new(made[seq][n % made[seq].len()], &a))
                }
                _ => ElementId::Head,
            };
            // A list's values say which insert made them; a text's, one character each.
            let value = if *text {
                char::from_u32(0x4e00 + counter as u32)
                    .expect("a character")
                    .to_string()
            } else {
                format!("{counter}.")
            };
            ops.push(Op {
                action: OpType::Put(ScalarValue::Str(value.into())),
                obj: ObjectId::Id(OpId::new(seq as u64 + 1, &a)),
                key: Key::Seq(elem),
                pred: SortedVec::new(),
                insert: true,
            });
            made[seq].push(counter);
        }
        genesis_of(ops)
    }

    /// A text's elements as a genesis change can write them: strings of one character read as
    /// Automerge reads them, and anything else (an empty string, two characters) makes the
    /// reader decline: Automerge applies it, and §7.3 rule 6 refuses it.
    #[test]
    fn genesis_json_reads_a_text_of_strings_only() {
        use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
        let a = actor(1);
        let text_of = |values: Vec<ScalarValue>| {
            let mut ops = vec![make_at_root("t", ObjType::Text)];
            for value in values {
                let after = match ops.len() {
                    1 => ElementId::Head,
                    n => ElementId::Id(OpId::new(n as u64, &a)),
                };
                ops.push(Op {
                    action: OpType::Put(value),
                    obj: ObjectId::Id(OpId::new(1, &a)),
                    key: Key::Seq(after),
                    pred: SortedVec::new(),
                    insert: true,
                });
            }
            genesis_of(ops)
        };
        let string = |s: &str| ScalarValue::Str(s.into());
        for values in [
            vec![string("a")],
            vec![string("a"), string("é"), string("b")],
            vec![string("🏙"), string("c")],
        ] {
            let c = text_of(values);
            assert_eq!(genesis_json(&c), Some(to_json(&applied(&c), None)));
        }
        for values in [
            vec![string("ab"), string("c")],
            vec![string("")],
            vec![string("a"), string(""), string("b")],
            vec![ScalarValue::Int(5)],
            vec![string("a"), ScalarValue::Boolean(true)],
            vec![string("a"), ScalarValue::Null],
        ] {
            assert_eq!(genesis_json(&text_of(values)), None);
        }
    }

    #[test]
    fn genesis_json_reads_inserts_in_the_middle_of_small_lists_only() {
        let limit = MAX_GENESIS_MIDDLE_INSERT;
        let appends: Vec<(bool, Option<usize>)> =
            (0..=limit).map(|n| (false, n.checked_sub(1))).collect();
        let c = inserting_change(&appends);
        assert_eq!(genesis_json(&c), Some(to_json(&applied(&c), None)));
        assert_eq!(
            genesis_json(&c).expect("read")["l"]
                .as_array()
                .map(Vec::len),
            Some(limit + 1)
        );
        // One more element anywhere but the end of the 257-element list: declined.
        for elsewhere in [None, Some(0), Some(limit - 1)] {
            let mut inserts = appends.clone();
            inserts.push((false, elsewhere));
            let c = inserting_change(&inserts);
            assert_eq!(genesis_json(&c), None, "{elsewhere:?}");
        }
        // The same in a list of 256: read, as Automerge reads it.
        for elsewhere in [None, Some(0), Some(limit - 2)] {
            let mut inserts = appends[..limit].to_vec();
            inserts.push((false, elsewhere));
            let c = inserting_change(&inserts);
            assert_eq!(genesis_json(&c), Some(to_json(&applied(&c), None)));
        }
    }

    /// A genesis change putting `values` at the root (keys `k0`, `k1`, ...) and as the
    /// elements of a list `l`.
    fn putting_change(values: &[ScalarValue]) -> Change {
        use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
        let a = actor(1);
        let put = |obj, key, insert, v: &ScalarValue| Op {
            action: OpType::Put(v.clone()),
            obj,
            key,
            pred: SortedVec::new(),
            insert,
        };
        let mut ops = vec![make_at_root("l", ObjType::List)];
        for (n, v) in values.iter().enumerate() {
            ops.push(put(
                ObjectId::Root,
                Key::Map(format!("k{n}").into()),
                false,
                v,
            ));
            let after = if n == 0 {
                ElementId::Head
            } else {
                ElementId::Id(OpId::new(ops.len() as u64 - 1, &a))
            };
            ops.push(put(
                ObjectId::Id(OpId::new(1, &a)),
                Key::Seq(after),
                true,
                v,
            ));
        }
        genesis_of(ops)
    }

    fn scalar() -> impl Strategy<Value = ScalarValue> {
        prop_oneof![
            "\\PC{0,12}".prop_map(|s| ScalarValue::Str(s.into())),
            any::<i64>().prop_map(ScalarValue::Int),
            (-100i64..100).prop_map(ScalarValue::Int),
            any::<u64>().prop_map(ScalarValue::Uint),
            (-1e12f64..1e12).prop_map(ScalarValue::F64),
            any::<bool>().prop_map(ScalarValue::Boolean),
            Just(ScalarValue::Null),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(ScalarValue::Bytes),
            any::<i64>().prop_map(|n| ScalarValue::Counter(n.into())),
            any::<i64>().prop_map(ScalarValue::Timestamp),
        ]
    }

    /// Whether the chunk reader reads `v` itself (else it leaves the change to Automerge).
    fn read_from_the_chunk(v: &ScalarValue) -> bool {
        match v {
            ScalarValue::Int(n) => (-(1i64 << 62)..(1i64 << 62)).contains(n),
            ScalarValue::Uint(n) => *n < 1 << 63,
            ScalarValue::Str(_)
            | ScalarValue::F64(_)
            | ScalarValue::Boolean(_)
            | ScalarValue::Null => true,
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The chunk reader reads every scalar it answers for as Automerge decodes it, and
        /// answers for strings, numbers of up to 63 bits, floats, booleans and nulls.
        #[test]
        fn the_chunk_reader_reads_scalars_as_automerge_does(
            values in prop::collection::vec(scalar(), 0..12),
        ) {
            let change = putting_change(&values);
            let read = crate::chunk::genesis_ops(change.raw_bytes());
            if let Some(read) = &read {
                let decoded = change.decode();
                let decoded = decoded_genesis_ops(&decoded);
                prop_assert_eq!(Some(read), decoded.as_ref());
            }
            prop_assert_eq!(read.is_some(), values.iter().all(read_from_the_chunk));
        }

    }

    /// Every one-byte change to genesis chunks (four new values at every position) that
    /// Automerge still decodes: where the chunk reader answers, it reads what Automerge decodes.
    #[test]
    fn the_chunk_reader_reads_mutated_chunks_as_automerge_or_not_at_all() {
        let (mut answered, mut decoded_count) = (0, 0);
        for texts in [Texts::Merged, Texts::Plain] {
            let (_, change) =
                new_document(actor(1), &practice().into(), "create", texts).expect("new");
            let bytes = change.raw_bytes().to_vec();
            for at in 0..bytes.len() {
                for new in [bytes[at] ^ 1, bytes[at] ^ 0x80, bytes[at] ^ 0x40, 0, 0xff] {
                    let mut mutated = bytes.clone();
                    mutated[at] = new;
                    let Ok(Ok(mutated)) = isolate(|| Change::from_bytes(mutated)) else {
                        continue;
                    };
                    decoded_count += 1;
                    if let Some(read) = crate::chunk::genesis_ops(mutated.raw_bytes()) {
                        answered += 1;
                        let decoded = isolate(|| mutated.decode()).expect("decodes what it read");
                        assert_eq!(
                            Some(read),
                            decoded_genesis_ops(&decoded),
                            "byte {at} = {new}"
                        );
                    }
                }
            }
        }
        assert!(answered > 100, "{answered} of {decoded_count} read");
    }

    /// What the genesis reader takes without Automerge, Automerge decodes: the same hash, actor
    /// and operations, the same [`genesis_json`], and, where that reads a record, a document
    /// `Automerge::load` loads (the payload is stored as the document). True if it took it.
    fn taken_as_automerge_takes(bytes: &[u8]) -> bool {
        let Some(read) = crate::chunk::genesis_change(bytes, 1 << 20) else {
            return false;
        };
        let change = isolate(|| Change::from_bytes(bytes.to_vec()))
            .expect("no panic")
            .expect("Automerge decodes what the genesis reader takes");
        assert_eq!(read.hash, change.hash());
        assert_eq!(read.actor, change.actor_id().to_bytes());
        assert!(change.deps().is_empty() && change.other_actor_ids().is_empty());
        assert_eq!((change.seq(), change.start_op().get()), (1, 1));
        assert_eq!(change.len(), read.ops.len());
        let decoded = isolate(|| change.decode()).expect("decodes");
        assert_eq!(Some(read.ops), decoded_genesis_ops(&decoded));
        let fast = genesis_json_of_payload(bytes, 1 << 20).map(|(_, _, json)| json);
        assert_eq!(fast, genesis_json(&change));
        if fast.is_some() {
            assert!(matches!(isolate(|| Automerge::load(bytes)), Ok(Ok(_))));
        }
        true
    }

    /// Genesis chunks by `actor` (of a practice and of a group with an agenda, with merged and
    /// plain texts: the first four), then every one-byte change (five new values at each
    /// position), deletion and insertion (three values) in their bodies, each with its length
    /// and checksum made right again, and every one-byte change of their headers.
    pub(crate) fn genesis_variants(actor: &ActorId) -> Vec<Vec<u8>> {
        use crate::chunk::tests::{body_of, rechunk};
        let grouped = with_agenda(&group(), |ag| {
            ag.items.push(item("z1", "Mobility"));
            ag.items.push(item("z2", "Energy"));
        });
        let mut chunks = Vec::new();
        for record in [Record::from(practice()), Record::from(grouped)] {
            for texts in [Texts::Merged, Texts::Plain] {
                let (_, change) =
                    new_document(actor.clone(), &record, "create", texts).expect("new");
                chunks.push(change.raw_bytes().to_vec());
            }
        }
        let mut variants = chunks.clone();
        for bytes in chunks {
            let body = body_of(&bytes);
            for at in 0..body.len() {
                for new in [body[at] ^ 1, body[at] ^ 0x80, body[at] ^ 0x40, 0, 0xff] {
                    let mut m = body.to_vec();
                    m[at] = new;
                    variants.push(rechunk(&m));
                }
                let mut m = body.to_vec();
                m.remove(at);
                variants.push(rechunk(&m));
                for new in [0, 0x80, body[at]] {
                    let mut m = body.to_vec();
                    m.insert(at, new);
                    variants.push(rechunk(&m));
                }
            }
            for at in 0..bytes.len() - body.len() {
                for new in [bytes[at] ^ 1, bytes[at] ^ 0x80, 0, 0xff] {
                    let mut m = bytes.clone();
                    m[at] = new;
                    variants.push(m);
                }
            }
        }
        variants
    }

    /// Whatever the genesis reader takes without Automerge (`chunk::genesis_change`), Automerge
    /// decodes and reads the same, over [`genesis_variants`].
    #[test]
    fn what_the_genesis_reader_takes_automerge_decodes_the_same() {
        let variants = genesis_variants(&actor(1));
        for chunk in &variants[..4] {
            assert!(
                taken_as_automerge_takes(chunk),
                "the reader takes the change itself"
            );
        }
        let taken = variants
            .iter()
            .filter(|v| taken_as_automerge_takes(v))
            .count();
        assert!(taken > 1_000, "{taken} of {} taken", variants.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Inserts anywhere in a genesis change's lists and texts read in Automerge's order.
        #[test]
        fn genesis_json_orders_inserts_as_automerge_does(
            inserts in prop::collection::vec((any::<bool>(), prop::option::weighted(0.8, 0..64usize)), 0..48),
        ) {
            let c = inserting_change(&inserts);
            prop_assert_eq!(genesis_json(&c), Some(to_json(&applied(&c), None)));
        }

        /// Sequential edits always read back as exactly the target, and every change the
        /// writer makes keeps its operations in view (§7.3): items added, removed, moved,
        /// retitled (a text edit) and given presenters (a list of strings).
        #[test]
        fn item_edits_read_back_exactly(batches in prop::collection::vec(
            prop::collection::vec(op(), 1..4), 1..12))
        {
            let g = group();
            let mut doc = create(g.clone());
            let mut target = g;
            let mut next_id = 0;
            for batch in &batches {
                target = with_agenda(&target, |ag| {
                    for op in batch {
                        apply(&mut ag.items, op, &mut next_id);
                    }
                });
                let before = doc.clone();
                if let Some(change) = edit(&mut doc, 1, target.clone()) {
                    prop_assert_eq!(reference_outside_past(&before, &change), Ok(None));
                    prop_assert!(references_inside_whole_doc(&before, &change));
                }
                prop_assert_eq!(read(&doc), Record::from(target.clone()));
            }
            // Reloading from the saved bytes gives the same record.
            let loaded = Automerge::load(&doc.save()).expect("load");
            prop_assert_eq!(read(&loaded), Record::from(target));
        }

        /// Edits that write only what differs from the record read before them
        /// (`edit_document_over`) read back as exactly the target, ranked agendas and merged
        /// concurrent edits included (where the record's order of items is not the list's),
        /// and make the same document (its JSON form) as writing the whole target does.
        #[test]
        fn edits_over_the_record_read_before_read_back_exactly(
            batches in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..10),
            other in prop::collection::vec(op(), 0..4),
            ranked in any::<bool>(),
        ) {
            let mut g = group();
            if ranked {
                with_ranks(&mut g);
            }
            let base = create(g.clone());
            let (mut doc, mut concurrent) = fork(&base);
            let mut next_id = 1_000;
            let mut theirs = g.clone();
            for op in &other {
                theirs = with_agenda(&theirs, |ag| {
                    if ranked {
                        ranked_apply(ag, op, &mut next_id);
                    } else {
                        apply(&mut ag.items, op, &mut next_id);
                    }
                });
                edit(&mut concurrent, 3, theirs.clone());
            }
            sync(&mut doc, &mut concurrent);
            let mut whole = doc.fork().with_actor(actor(4));
            next_id = 0;
            for batch in &batches {
                let before = read(&doc);
                let Record::Group(mut target) = before.clone() else {
                    panic!("a group")
                };
                target = with_agenda(&target, |ag| {
                    for op in batch {
                        if ranked {
                            ranked_apply(ag, op, &mut next_id);
                        } else {
                            apply(&mut ag.items, op, &mut next_id);
                        }
                    }
                });
                let target = Record::from(target);
                let json_before = to_json(&doc, None);
                let changed =
                    edit_document_over(&mut doc, actor(2), Some(&json_before), &target, "edit")
                        .expect("edit");
                let _ = edit_document(&mut whole, actor(4), &target, "edit").expect("edit");
                // The same document as an edit that reads everything it compares.
                prop_assert_eq!(to_json(&doc, None), to_json(&whole, None));
                prop_assert_eq!(changed.is_some(), target != before);
                // The change read from what it acts on is the whole read.
                if let Some(change) = &changed {
                    prop_assert_eq!(
                        json_after(&doc, &json_before, change),
                        Some(to_json(&doc, None))
                    );
                }
                prop_assert_eq!(read(&whole), target.clone());
                prop_assert_eq!(read(&doc), target);
            }
            let loaded = Automerge::load(&doc.save()).expect("load");
            prop_assert_eq!(read(&loaded), read(&doc));
        }

        /// Two cities editing a ranked agenda at once (inserts, moves, removals, retitles)
        /// end with the same items, each once, in the same order.
        #[test]
        fn concurrent_ranked_edits_converge_with_each_item_once(
            left in prop::collection::vec(op(), 1..6),
            right in prop::collection::vec(op(), 1..6),
        ) {
            let mut g = group();
            with_ranks(&mut g);
            let base = create(g.clone());
            let (mut a, mut b) = fork(&base);
            let mut next_id = 0;
            for (doc, who, ops) in [(&mut a, 2, &left), (&mut b, 3, &right)] {
                let mut target = g.clone();
                for op in ops {
                    target = with_agenda(&target, |ag| ranked_apply(ag, op, &mut next_id));
                    edit(doc, who, target.clone());
                    prop_assert_eq!(read(doc), Record::from(target.clone()));
                }
            }
            sync(&mut a, &mut b);
            let r = read(&a);
            prop_assert_eq!(&read(&b), &r);
            prop_assert!(r.validate().is_ok(), "{:?}", r.validate());
            let ids = item_ids(&r);
            let unique: HashSet<&String> = ids.iter().collect();
            prop_assert_eq!(unique.len(), ids.len(), "{:?}", ids);
        }

        /// Any group's genesis change reads the same without Automerge as with it, and the
        /// direct builder matches `new_document` with plain texts.
        #[test]
        fn genesis_changes_read_the_same_fast(
            ops in prop::collection::vec(op(), 0..16),
            title in "\\PC{0,40}",
        ) {
            let mut next_id = 0;
            let mut target = with_agenda(&group(), |ag| {
                for op in &ops {
                    apply(&mut ag.items, op, &mut next_id);
                }
            });
            if !title.trim().is_empty() {
                target.name = title;
            }
            let record = Record::from(target);
            for texts in [Texts::Merged, Texts::Plain] {
                let (_, change) = new_document(actor(1), &record, "create", texts).expect("new");
                let json = to_json(&applied(&change), None);
                prop_assert_eq!(genesis_json(&change), Some(json.clone()));
                // Read without Automerge too.
                let (hash, author, fast) =
                    genesis_json_of_payload(change.raw_bytes(), 1 << 20).expect("read from the payload");
                let ours = actor(1).to_bytes().to_vec();
                prop_assert_eq!((hash, author, fast), (change.hash(), &ours[..], json));
            }
            let built = new_plain_change(actor(1), &record, "create").expect("build");
            let (_, reference) = new_document(actor(1), &record, "create", Texts::Plain).expect("new");
            prop_assert_eq!(built.raw_bytes(), reference.raw_bytes());
        }

        /// Concurrent edits always converge to the same, readable record on both replicas, in
        /// which every item either side added is present.
        #[test]
        fn concurrent_item_edits_converge(
            ops_a in prop::collection::vec(op(), 0..8),
            ops_b in prop::collection::vec(op(), 0..8),
        ) {
            let g = group();
            let base = create(g.clone());
            let (mut a, mut b) = fork(&base);
            let (mut next_a, mut next_b) = (100, 200);
            let mut ta = g.clone();
            for op in &ops_a {
                ta = with_agenda(&ta, |ag| apply(&mut ag.items, op, &mut next_a));
                edit(&mut a, 2, ta.clone());
            }
            let mut tb = g.clone();
            for op in &ops_b {
                tb = with_agenda(&tb, |ag| apply(&mut ag.items, op, &mut next_b));
                edit(&mut b, 3, tb.clone());
            }
            sync(&mut a, &mut b);
            let merged = read(&a);
            prop_assert_eq!(&merged, &read(&b));
            let ids = item_ids(&merged);
            for id in item_ids(&Record::from(ta)).into_iter().chain(item_ids(&Record::from(tb))) {
                let fresh: u32 = id[1..].parse().expect("numeric id");
                if fresh > 100 {
                    prop_assert!(ids.contains(&id), "{} lost in {:?}", id, ids);
                }
            }
        }
    }
}
