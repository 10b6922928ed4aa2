//! The numbers in the docs are the code's: every "`NAME` = N" in `docs/*.md`, and every table
//! row "| `NAME` | N …", for the constants listed here, must give the constant's value (issue
//! #12: `protocol.md` gave 8 192 and 200 for limits the code had at 4 096 and 400).

use std::collections::BTreeMap;

fn constants() -> BTreeMap<&'static str, u64> {
    use intercity_node::{control, net, store};
    use intercity_protocol::{entry, ingest, invite, sync};
    let n = |v: usize| v as u64;
    BTreeMap::from([
        ("HEADER_LEN", n(entry::HEADER_LEN)),
        ("SIGNED_ENTRY_LEN", n(entry::SIGNED_ENTRY_LEN)),
        ("MAX_PAYLOAD_BYTES", n(entry::MAX_PAYLOAD_BYTES)),
        ("MAX_FRAME_BYTES", n(sync::MAX_FRAME_BYTES)),
        ("MAX_BATCH_ENTRIES", n(sync::MAX_BATCH_ENTRIES)),
        ("BATCH_TARGET_BYTES", n(sync::BATCH_TARGET_BYTES)),
        ("MAX_FORK_PROOFS", n(sync::MAX_FORK_PROOFS)),
        ("MAX_HEADS", n(sync::MAX_HEADS)),
        ("MAX_ERROR_TEXT", n(sync::MAX_ERROR_TEXT)),
        ("MAX_JOIN_NAME", n(sync::MAX_JOIN_NAME)),
        ("MAX_JOIN_ADDRS", n(sync::MAX_JOIN_ADDRS)),
        ("MAX_JOIN_ADDR", n(sync::MAX_JOIN_ADDR)),
        ("MAX_TOKEN_CHARS", n(invite::MAX_TOKEN_CHARS)),
        ("MAX_CHANGE_OPS", n(ingest::MAX_CHANGE_OPS)),
        ("MAX_PENDING_ENTRIES", ingest::MAX_PENDING_ENTRIES),
        ("MAX_PENDING_BYTES", ingest::MAX_PENDING_BYTES),
        ("MAX_PENDING_PER_AUTHOR", ingest::MAX_PENDING_PER_AUTHOR),
        (
            "MAX_PENDING_BYTES_PER_AUTHOR",
            ingest::MAX_PENDING_BYTES_PER_AUTHOR,
        ),
        ("MAX_REJECTED_PER_FEED", ingest::MAX_REJECTED_PER_FEED),
        (
            "MAX_REJECTED_BYTES_PER_FEED",
            ingest::MAX_REJECTED_BYTES_PER_FEED,
        ),
        ("MAX_REPLAY_PASSES", n(ingest::MAX_REPLAY_PASSES)),
        ("MAX_REASON_QUOTE", n(ingest::MAX_REASON_QUOTE)),
        ("MAX_CAPS", n(intercity_protocol::succession::MAX_CAPS)),
        (
            "MAX_KEYS_PER_CITY",
            n(intercity_protocol::succession::MAX_KEYS_PER_CITY),
        ),
        (
            "MAX_GUARDIANS",
            n(intercity_protocol::succession::MAX_GUARDIANS),
        ),
        ("MAX_INVALID_PER_PEER", u64::from(net::MAX_INVALID_PER_PEER)),
        ("MAX_INFLIGHT_RANGES", n(net::MAX_INFLIGHT_RANGES)),
        ("MAX_READ_AHEAD", n(net::MAX_READ_AHEAD)),
        ("NUDGE_FANOUT", n(intercity_protocol::session::NUDGE_FANOUT)),
        (
            "MAX_PAGES_PER_EXCHANGE",
            n(intercity_protocol::session::MAX_PAGES_PER_EXCHANGE),
        ),
        (
            "MAX_HEADS_KEPT",
            n(intercity_protocol::session::MAX_HEADS_KEPT),
        ),
        ("MAX_ADDRS", n(intercity_protocol::record::MAX_ADDRS)),
        ("MAX_FOREIGN_AUTHORS", n(net::MAX_FOREIGN_AUTHORS)),
        (
            "MAX_METRICS_CONNECTIONS",
            n(intercity_node::daemon::metrics::MAX_METRICS_CONNECTIONS),
        ),
        ("MAX_PUSH_JUDGED", n(net::MAX_PUSH_JUDGED)),
        ("MAX_GUESTS", n(net::MAX_GUESTS)),
        ("MAX_GUESTS_PER_IP", n(net::MAX_GUESTS_PER_IP)),
        ("MAX_PENDING_PER_IP", n(net::MAX_PENDING_PER_IP)),
        ("MAX_PENDING_QUIC", n(net::MAX_PENDING_QUIC)),
        ("MAX_GUEST_FRAME_BYTES", n(net::MAX_GUEST_FRAME_BYTES)),
        ("GUEST_STREAMS", n(net::GUEST_STREAMS)),
        ("MEMBER_STREAMS", n(net::MEMBER_STREAMS)),
        ("MAX_QUEUED_JOBS_PER_PEER", n(net::MAX_QUEUED_JOBS_PER_PEER)),
        ("MAX_RELAY_RESERVATIONS", n(net::MAX_RELAY_RESERVATIONS)),
        ("MAX_DIALS_PER_PEER", n(net::MAX_DIALS_PER_PEER)),
        ("MAX_REMOTE_REQUESTS", n(net::MAX_REMOTE_REQUESTS)),
        ("MAX_STAFF_CONNECTIONS", n(control::MAX_STAFF_CONNECTIONS)),
        ("MAX_DIAL_ADDRS", n(net::MAX_DIAL_ADDRS)),
        ("MAX_RELAY_CIRCUITS", n(net::MAX_RELAY_CIRCUITS)),
        (
            "MAX_RELAY_CIRCUITS_PER_PEER",
            n(net::MAX_RELAY_CIRCUITS_PER_PEER),
        ),
        ("MAX_STORE_READERS", n(net::MAX_STORE_READERS)),
        ("SCHEMA_VERSION", u64::from(store::SCHEMA_VERSION)),
        ("MIN_TAIL_BASE", n(store::MIN_TAIL_BASE)),
        ("MAX_TAIL_CHANGES", n(store::MAX_TAIL_CHANGES)),
        ("MIN_TAIL_HISTORY", store::MIN_TAIL_HISTORY),
        ("MAX_CACHED_DOCS", n(store::MAX_CACHED_DOCS)),
        ("MAX_CACHED_DOC_BYTES", n(store::MAX_CACHED_DOC_BYTES)),
        ("MAX_REQUEST_BYTES", control::MAX_REQUEST_BYTES),
        (
            "MAX_CONTROL_CONNECTIONS",
            n(control::MAX_CONTROL_CONNECTIONS),
        ),
    ])
}

/// The number at the start of `text`, written with spaces or commas between thousands, and
/// scaled by a binary unit after it (`KiB`, `MiB`, `GiB`).
fn number(text: &str) -> Option<u64> {
    let text = text.trim_start();
    let bytes = text.as_bytes();
    let mut digits = String::new();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        if c.is_ascii_digit() {
            digits.push(char::from(c));
            at += 1;
        } else if matches!(c, b' ' | b',' | b'_')
            && !digits.is_empty()
            && bytes.len() >= at + 4
            && bytes[at + 1..at + 4].iter().all(u8::is_ascii_digit)
            && bytes.get(at + 4).is_none_or(|d| !d.is_ascii_digit())
        {
            // A separator only between groups of three digits.
            at += 1;
        } else {
            break;
        }
    }
    let value: u64 = digits.parse().ok()?;
    let unit = text[at..].trim_start();
    let scale = [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        .into_iter()
        .find(|(u, _)| unit.starts_with(u))
        .map_or(1, |(_, s)| s);
    Some(value * scale)
}

#[test]
fn the_numbers_in_the_docs_are_the_constants() {
    let known = constants();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(docs).expect("docs") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let mut check = |name: &str, found: Option<u64>| {
            if let (Some(&value), Some(found)) = (known.get(name), found) {
                checked += 1;
                if value != found {
                    wrong.push(format!(
                        "{file}: `{name}` given as {found}, the code has {value}"
                    ));
                }
            }
        };
        // "`NAME` = N", across line breaks.
        let flat = text.replace('\n', " ");
        for (i, _) in flat.match_indices("` = ") {
            let name = flat[..i].rsplit('`').next().unwrap_or_default();
            check(name, number(&flat[i + 4..]));
        }
        // "| `A`, `B` | 1, 2 | …" table rows.
        for line in text.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(names), Some(values)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let names: Vec<&str> = names.split(", ").map(|n| n.trim_matches('`')).collect();
            let values: Vec<&str> = if names.len() > 1 {
                values.split(", ").collect()
            } else {
                vec![values]
            };
            for (name, value) in names.iter().zip(values) {
                check(name, number(value));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        checked >= 20,
        "only {checked} numbers checked: the parsing broke"
    );
}

#[test]
fn numbers_parse_with_thousands_separators() {
    assert_eq!(number("262 144 bytes (256 KiB)"), Some(262_144));
    assert_eq!(number("8 388 608 (8 MiB)"), Some(8_388_608));
    assert_eq!(number("1 024 rejected"), Some(1_024));
    assert_eq!(number("4, 400"), Some(4));
    assert_eq!(number("16 384 bytes, on at most"), Some(16_384));
    assert_eq!(number("5 strikes"), Some(5));
    assert_eq!(number("256 KiB"), Some(262_144));
    assert_eq!(number("16 MiB of"), Some(16 << 20));
    assert_eq!(number("no"), None);
}
