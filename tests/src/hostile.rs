//! A hostile roster city: entries that it signs correctly and forms badly, built from the
//! `protocol` crate as a misbehaving peer would build them.

use automerge::{ActorId, Change};
use intercity_node::City;
use intercity_protocol::doc;
use intercity_protocol::entry::{DocId, Hash32, Scope, sign_entry};
use intercity_protocol::record::{Practice, Record};
use intercity_protocol::sync::WireEntry;

/// Reads an unsigned LEB128 number; returns it and its length in bytes.
fn uleb(bytes: &[u8]) -> (usize, usize) {
    let (mut value, mut shift) = (0usize, 0);
    for (i, b) in bytes.iter().enumerate() {
        value |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (value, i + 1);
        }
        shift += 7;
    }
    panic!("truncated LEB128 number");
}

fn put_uleb(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `chunk` (an uncompressed change chunk without other actors) with `extra` listed as an
/// "other actor" that no operation uses, re-encoded with a valid checksum. Automerge decodes and
/// applies such a change, and panics when it loads its bytes as a document.
pub fn with_unused_actor(chunk: &[u8], extra: &[u8]) -> Vec<u8> {
    // Header: magic (4), checksum (4), chunk type (1), body length (LEB128).
    let (len, n) = uleb(&chunk[9..]);
    let body = &chunk[9 + n..9 + n + len];
    // Body: dependencies, actor, seq, start op, time, message, other actors, op columns.
    let (deps, k) = uleb(body);
    let mut at = k + 32 * deps;
    let (actor_len, k) = uleb(&body[at..]);
    at += k + actor_len;
    for _ in 0..3 {
        at += uleb(&body[at..]).1;
    }
    let (message_len, k) = uleb(&body[at..]);
    at += k + message_len;
    let (others, k) = uleb(&body[at..]);
    assert_eq!(others, 0, "the chunk already lists other actors");
    let mut new_body = body[..at].to_vec();
    put_uleb(&mut new_body, 1);
    put_uleb(&mut new_body, extra.len());
    new_body.extend_from_slice(extra);
    new_body.extend_from_slice(&body[at + k..]);
    let mut out = chunk[..9].to_vec();
    put_uleb(&mut out, new_body.len());
    out.extend_from_slice(&new_body);
    // Automerge computes the hash itself, whatever the checksum says.
    let hash = Change::from_bytes(out.clone())
        .expect("forged chunk decodes")
        .hash();
    out[4..8].copy_from_slice(&hash.0[..4]);
    out
}

/// The seq and the previous entry's hash of the next entry of `city`'s federation feed.
fn next_link(city: &City) -> (u64, Hash32) {
    crate::own_federation_head(city).map_or((1, Hash32::default()), |h| (h.seq + 1, h.hash))
}

/// The next entry of `city`'s federation feed, signed by it, carrying `payload` for `doc`.
pub fn next_entry(city: &City, doc: DocId, payload: Vec<u8>) -> WireEntry {
    let (seq, prev) = next_link(city);
    feed_entry(city, seq, prev, doc, payload).0
}

/// Entry `seq` of `city`'s federation feed after the entry hashed `prev`, carrying `payload` for
/// `doc`; and its hash.
fn feed_entry(
    city: &City,
    seq: u64,
    prev: Hash32,
    doc: DocId,
    payload: Vec<u8>,
) -> (WireEntry, Hash32) {
    let entry = sign_entry(city.key(), Scope::Federation, seq, prev, doc, &payload, 0);
    let wire = WireEntry {
        entry: entry.encode().to_vec(),
        payload,
        checked: None,
    };
    (wire, entry.hash())
}

/// A new practice of `city` whose genesis change lists an unused other actor: the poison of
/// issue #10, scenario 1. Returns the entry (the next of `city`'s federation feed) and the
/// document id it creates.
pub fn poison_practice(city: &City, title: &str) -> (WireEntry, DocId) {
    let mut actor = city.id().as_bytes().to_vec();
    actor.extend_from_slice(&[0xee; 8]);
    let record = Record::Practice(Practice::new(city.id().to_string(), title, "en"));
    let change = doc::new_plain_change(ActorId::from(actor), &record, "create practice")
        .expect("genesis change");
    let poison = with_unused_actor(change.raw_bytes(), &[0xab; 16]);
    let hash = Change::from_bytes(poison.clone()).expect("decodes").hash();
    let id = DocId::for_genesis(&hash);
    (next_entry(city, id, poison), id)
}

/// A new practice of `city` (country `IT`) and a change to it of `n` overwrites of `country`,
/// each naming the one before, all null but the last (`FR`): a few hundred bytes that leave one
/// value in view and `n` operations in the document's history (protocol.md §7.3). Returns the
/// two entries (the next of `city`'s federation feed) and the document id.
pub fn overwrite_bomb(city: &City, n: u64) -> (Vec<WireEntry>, DocId) {
    use automerge::ScalarValue;
    use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
    let actor = ActorId::from(city.id().as_bytes().to_vec());
    let mut practice = Practice::new(city.id().to_string(), "Overwritten", "en");
    practice.country = Some("IT".into());
    let (_, genesis) = doc::new_document(
        actor.clone(),
        &Record::Practice(practice),
        "create practice",
        doc::Texts::Merged,
    )
    .expect("genesis");
    let start = genesis.start_op().get();
    let country = genesis
        .decode()
        .operations
        .iter()
        .position(|op| op.key == Key::Map("country".into()))
        .expect("country");
    let next = genesis.max_op() + 1;
    let operations = (0..n)
        .map(|i| Op {
            action: OpType::Put(if i + 1 == n {
                ScalarValue::Str("FR".into())
            } else {
                ScalarValue::Null
            }),
            obj: ObjectId::Root,
            key: Key::Map("country".into()),
            pred: SortedVec::from(vec![if i == 0 {
                OpId(start + country as u64, actor.clone())
            } else {
                OpId(next + i - 1, actor.clone())
            }]),
            insert: false,
        })
        .collect();
    let bomb = forged_change(actor, 2, next, vec![genesis.hash()], operations);
    let id = DocId::for_genesis(&genesis.hash());
    let (seq, prev) = next_link(city);
    let (first, prev) = feed_entry(city, seq, prev, id, genesis.raw_bytes().to_vec());
    let (second, _) = feed_entry(city, seq + 1, prev, id, bomb.raw_bytes().to_vec());
    (vec![first, second], id)
}

/// A new "practice" of `city` whose genesis change makes a list of `maps` maps and then puts one
/// key of `key_len` bytes in each: Automerge's encoder stores the key once for the run, and a
/// reader that copies it for each map makes `maps × key_len` bytes of JSON. Returns the entry
/// (the next of `city`'s federation feed) and the document id it creates.
pub fn key_bomb(city: &City, maps: u64, key_len: usize) -> (WireEntry, DocId) {
    use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
    use automerge::{ObjType, ScalarValue};
    let actor = ActorId::from(city.id().as_bytes().to_vec());
    let op = |obj: ObjectId, key: Key, insert: bool, action: OpType| Op {
        action,
        obj,
        key,
        pred: SortedVec::new(),
        insert,
    };
    let at = |n: u64| OpId::new(n, &actor);
    let mut operations = vec![
        op(
            ObjectId::Root,
            Key::Map("kind".into()),
            false,
            OpType::Put(ScalarValue::Str("practice".into())),
        ),
        op(
            ObjectId::Root,
            Key::Map("a".into()),
            false,
            OpType::Make(ObjType::List),
        ),
    ];
    // Ops 3 .. maps + 2 make the maps, each after the one before; then one key in each. Built
    // as operations, not in a transaction: the key is shared, not copied for each.
    for n in 3..maps + 3 {
        let after = if n == 3 {
            ElementId::Head
        } else {
            ElementId::Id(at(n - 1))
        };
        operations.push(op(
            ObjectId::Id(at(2)),
            Key::Seq(after),
            true,
            OpType::Make(ObjType::Map),
        ));
    }
    let key = Key::Map("k".repeat(key_len).into());
    for n in 3..maps + 3 {
        operations.push(op(
            ObjectId::Id(at(n)),
            key.clone(),
            false,
            OpType::Put(ScalarValue::Null),
        ));
    }
    let change = first_change(actor, Vec::new(), operations);
    let id = DocId::for_genesis(&change.hash());
    (next_entry(city, id, change.raw_bytes().to_vec()), id)
}

/// A change by `actor` (its first: seq 1) putting the string `ops` on the document's root,
/// after `deps`, built without any check.
fn raw_change(actor: Vec<u8>, deps: Vec<automerge::ChangeHash>, ops: &[(&str, String)]) -> Change {
    use automerge::legacy::{Key, ObjectId, Op, OpType, SortedVec};
    let operations = ops
        .iter()
        .map(|(k, v)| Op {
            action: OpType::Put(automerge::ScalarValue::Str(v.as_str().into())),
            obj: ObjectId::Root,
            key: Key::Map((*k).into()),
            pred: SortedVec::new(),
            insert: false,
        })
        .collect();
    first_change(ActorId::from(actor), deps, operations)
}

/// The first change (seq 1, from op 1) of `actor`, after `deps`, of `operations` as they are.
fn first_change(
    actor: ActorId,
    deps: Vec<automerge::ChangeHash>,
    operations: Vec<automerge::legacy::Op>,
) -> Change {
    forged_change(actor, 1, 1, deps, operations)
}

/// Change `seq` of `actor`, its operations from `start_op`, after `deps`, of `operations` as
/// they are (nothing checked).
fn forged_change(
    actor: ActorId,
    seq: u64,
    start_op: u64,
    deps: Vec<automerge::ChangeHash>,
    operations: Vec<automerge::legacy::Op>,
) -> Change {
    Change::from(automerge::ExpandedChange {
        operations,
        actor_id: actor,
        hash: None,
        seq,
        start_op: std::num::NonZeroU64::new(start_op).expect("operations start at 1 or later"),
        time: 0,
        message: None,
        deps,
        extra_bytes: Vec::new(),
        author: None,
    })
}

/// `n` entries of a new federation feed of `key`, each a change to `doc` that depends on a
/// change nobody has (so each waits as pending for ever): the pending flood of issue #10,
/// scenario 3.
pub fn pending_flood(
    key: &intercity_protocol::identity::CityKey,
    doc: DocId,
    n: u64,
) -> Vec<WireEntry> {
    let mut prev = Hash32::default();
    (1..=n)
        .map(|seq| {
            let mut actor = key.id().as_bytes().to_vec();
            actor.extend_from_slice(&seq.to_be_bytes());
            let mut missing = [0u8; 32];
            missing[..8].copy_from_slice(&seq.to_be_bytes());
            missing[8..16].copy_from_slice(&key.id().as_bytes()[..8]);
            let ops = [("title", "x".to_string())];
            let change = raw_change(actor, vec![automerge::ChangeHash(missing)], &ops);
            let payload = change.raw_bytes().to_vec();
            let entry = sign_entry(key, Scope::Federation, seq, prev, doc, &payload, 0);
            prev = entry.hash();
            WireEntry {
                entry: entry.encode().to_vec(),
                payload,
                checked: None,
            }
        })
        .collect()
}

/// `n` new practices of `city`, each with a body of `body_chars` characters (the heaviest valid
/// entries: the most text to index), as the next entries of its federation feed.
pub fn heavy_practices(city: &City, n: u64, body_chars: usize) -> Vec<WireEntry> {
    let words = [
        "cooperative ",
        "makerspace ",
        "inclusion ",
        "neighbourhood ",
        "youth ",
    ];
    let body: String = words
        .iter()
        .cycle()
        .take(body_chars / 10)
        .copied()
        .collect();
    let body: String = body.chars().take(body_chars).collect();
    practices_with_bodies(city, (0..n).map(|_| body.clone()).collect())
}

/// New practices of `city` with random bodies of `body_chars` letters each (which compress
/// little, and make one word: little to index), as the next `n` entries of its federation
/// feed.
pub fn random_practices(city: &City, n: u64, body_chars: usize) -> Vec<WireEntry> {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let bodies = (0..n)
        .map(|_| {
            (0..body_chars)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"abcdefghijklmnopqrstuvwxyz"[(seed % 26) as usize] as char
                })
                .collect()
        })
        .collect();
    practices_with_bodies(city, bodies)
}

/// A new practice of `city` for each of `bodies`, as the next entries of its federation feed.
fn practices_with_bodies(city: &City, bodies: Vec<String>) -> Vec<WireEntry> {
    let (mut seq, mut prev) = next_link(city);
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut actor = city.id().as_bytes().to_vec();
            actor.extend_from_slice(&(seq + 1_000_000).to_be_bytes());
            let mut p = Practice::new(city.id().to_string(), format!("Heavy {i}"), "en");
            p.body = body;
            let change = doc::new_plain_change(ActorId::from(actor), &Record::Practice(p), "flood")
                .expect("genesis change");
            let id = DocId::for_genesis(&change.hash());
            let (wire, hash) = feed_entry(city, seq, prev, id, change.raw_bytes().to_vec());
            prev = hash;
            seq += 1;
            wire
        })
        .collect()
}

/// The `/intercity/sync/7` frame codec, for a hostile peer that answers as it likes.
#[derive(Clone, Default)]
pub struct RawSync;

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let mut buf = Vec::new();
    io.take(u64::from(u32::from_be_bytes(len)))
        .read_to_end(&mut buf)
        .await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: Vec<u8>,
) -> std::io::Result<()> {
    use futures::AsyncWriteExt;
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl libp2p::request_response::Codec for RawSync {
    type Protocol = libp2p::StreamProtocol;
    type Request = intercity_protocol::sync::Request;
    type Response = intercity_protocol::sync::Response;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Self::Request> {
        Self::Request::decode(&read_frame(io).await?).map_err(invalid)
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Self::Response> {
        Self::Response::decode(&read_frame(io).await?).map_err(invalid)
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Self::Request,
    ) -> std::io::Result<()> {
        write_frame(io, req.encode()).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        res: Self::Response,
    ) -> std::io::Result<()> {
        write_frame(io, res.encode()).await
    }
}

/// [`RawSync`] that never reads an answer: its requests wait, unanswered, until they time out.
#[derive(Clone, Default)]
pub struct DeafSync;

impl libp2p::request_response::Codec for DeafSync {
    type Protocol = libp2p::StreamProtocol;
    type Request = intercity_protocol::sync::Request;
    type Response = intercity_protocol::sync::Response;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        p: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Self::Request> {
        RawSync.read_request(p, io).await
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<Self::Response> {
        futures::future::pending().await
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        p: &Self::Protocol,
        io: &mut T,
        req: Self::Request,
    ) -> std::io::Result<()> {
        RawSync.write_request(p, io, req).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        p: &Self::Protocol,
        io: &mut T,
        res: Self::Response,
    ) -> std::io::Result<()> {
        RawSync.write_response(p, io, res).await
    }
}

/// A TCP swarm with the identity `keypair` and the behaviour `behaviour` makes: a peer that
/// speaks what its owner likes.
pub fn tcp_swarm<B: libp2p::swarm::NetworkBehaviour>(
    keypair: libp2p::identity::Keypair,
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(std::time::Duration::from_secs(60)))
        .build()
}

/// A swarm whose only behaviour is request-response on `/intercity/sync/7` with `codec`: a
/// peer that speaks the sync protocol as its owner likes.
pub fn sync_swarm<C>(
    keypair: libp2p::identity::Keypair,
    codec: C,
    support: libp2p::request_response::ProtocolSupport,
) -> libp2p::Swarm<libp2p::request_response::Behaviour<C>>
where
    C: libp2p::request_response::Codec<Protocol = libp2p::StreamProtocol> + Clone + Send + 'static,
{
    tcp_swarm(keypair, |_| {
        libp2p::request_response::Behaviour::with_codec(
            codec,
            [(
                libp2p::StreamProtocol::new(intercity_protocol::sync::PROTOCOL),
                support,
            )],
            libp2p::request_response::Config::default()
                .with_max_concurrent_streams(128)
                .with_request_timeout(std::time::Duration::from_secs(60)),
        )
    })
}

/// A roster city (the city whose key is `key`) that answers sync requests as its owner likes.
pub fn sync_peer(
    key: &intercity_protocol::identity::CityKey,
) -> libp2p::Swarm<libp2p::request_response::Behaviour<RawSync>> {
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes()).expect("an ed25519 key");
    sync_swarm(
        keypair,
        RawSync,
        libp2p::request_response::ProtocolSupport::Full,
    )
}

/// `n` entries that continue `city`'s federation feed, each creating a document whose record
/// is not valid (its kind is unknown), padded with `pad` bytes of text: every node rejects
/// them all, and until issue #10's scenario 7 kept them all for ever.
pub fn rejected_flood(city: &City, n: u64, pad: usize) -> Vec<WireEntry> {
    let (first, mut prev) = next_link(city);
    (first..first + n)
        .map(|seq| {
            let mut actor = city.id().as_bytes().to_vec();
            actor.extend_from_slice(&seq.to_be_bytes());
            let ops = [
                ("kind", "nonsense".to_string()),
                ("padding", "x".repeat(pad)),
            ];
            let change = raw_change(actor, Vec::new(), &ops);
            let doc = DocId::for_genesis(&change.hash());
            let (wire, hash) = feed_entry(city, seq, prev, doc, change.raw_bytes().to_vec());
            prev = hash;
            wire
        })
        .collect()
}

/// A roster city (`key`) that dials `addr` and answers every sync request with `respond`, until
/// the returned task is aborted.
pub fn answering(
    key: &intercity_protocol::identity::CityKey,
    addr: &str,
    mut respond: impl FnMut(intercity_protocol::sync::Request) -> intercity_protocol::sync::Response
    + Send
    + 'static,
) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    use libp2p::request_response::{Event, Message};
    let mut peer = sync_peer(key);
    peer.dial(addr.parse::<libp2p::Multiaddr>().expect("addr"))
        .expect("dial");
    tokio::spawn(async move {
        loop {
            if let libp2p::swarm::SwarmEvent::Behaviour(Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            }) = peer.select_next_some().await
            {
                let response = respond(request);
                let _ = peer.behaviour_mut().send_response(channel, response);
            }
        }
    })
}

/// The first entry of `n` feeds of the scope `group:<doc>`, each signed by a key of its own
/// (puppets nobody trusts), each a change to `doc` with no dependencies: what
/// a member could relay into a federation's scope, whose entries are judged whoever signed
/// them (docs/protocol.md §18).
pub fn puppet_entries(doc: DocId, n: u16) -> Vec<WireEntry> {
    (0..n)
        .map(|k| {
            let mut secret = [0xa5u8; 32];
            secret[..2].copy_from_slice(&k.to_be_bytes());
            let key = intercity_protocol::identity::CityKey::from_secret(secret);
            let mut actor = key.id().as_bytes().to_vec();
            actor.extend_from_slice(&[0x5a; 8]);
            let change = raw_change(actor, Vec::new(), &[("name", format!("puppet {k}"))]);
            let payload = change.raw_bytes().to_vec();
            let entry = sign_entry(
                &key,
                Scope::Group(doc),
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
        })
        .collect()
}
