//! What every fuzz target runs on one input: the real decoder of our crates, then the invariants
//! it must keep beyond "no panic" (a result within the input, a re-encoding that gives the same
//! bytes, the same answer however the input is split). One file for both drivers: the libFuzzer
//! targets (`fuzz/fuzz_targets/*.rs`, through `fuzz/src/lib.rs`) and the stable replay of the
//! committed corpora in `cargo test` (`tests/fuzz_corpus.rs` includes this file by path), so a
//! corpus input that once failed fails the ordinary test run too. A broken invariant panics:
//! that is how libFuzzer and the test see it.

use std::path::Path;

use cluster::net::{
    decode_read_index, decode_write_result, encode_read_index, encode_write_result,
};
use cluster::peer::frame::{Frame, Limits};
use cluster::raft::{rpc_codec, LogCommand};
use worker::http::{parse_head, ChunkProgress, ChunkedDecoder, HeadParse};
use worker::query::{self, Params};

/// One target's check of one input (it panics on a broken invariant).
pub type Check = fn(&[u8]);

/// The targets, by name: the folder of each one's corpus (`fuzz/corpus/<name>/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("http_head", http_head),
    ("chunked", chunked),
    ("query", query),
    ("conf", conf),
    ("journal_record", journal_record),
    ("peer_frame", peer_frame),
    ("peer_messages", peer_messages),
];

/// The request head parser (`worker::http::parse_head`) as the connection runs it.
pub fn http_head(data: &[u8]) {
    // Heads capture the access-log fields too (more of the parser runs).
    worker::http::capture_access(true);
    let whole = parse_head(data, 0);
    match &whole {
        Ok(HeadParse::Complete { head, len }) => {
            assert!(*len <= data.len(), "head of {len} bytes in {}", data.len());
            // Bytes after the head do not change it.
            assert_eq!(
                parse_head(&data[..*len], 0).as_ref(),
                whole.as_ref(),
                "the head alone parses differently"
            );
            // Path and query are cut from the request line (a cheap bound, not a search).
            assert!(
                head.path.len() + head.query.len() < *len,
                "target longer than the head"
            );
        }
        Ok(HeadParse::Partial { scanned }) => {
            assert!(
                *scanned <= data.len(),
                "scanned {scanned} of {}",
                data.len()
            )
        }
        Err(e) => assert!(
            matches!(e.status, 400 | 414 | 431 | 501) && e.close,
            "unexpected framing error {e:?}"
        ),
    }
    // The same bytes arriving in two reads, with the first search's hint, give the same answer
    // (a head trickled in must parse as one read at once).
    let cut = data.len() / 2;
    if let Ok(HeadParse::Partial { scanned }) = parse_head(&data[..cut], 0) {
        assert_eq!(
            parse_head(data, scanned).as_ref(),
            whole.as_ref(),
            "split at {cut} (scanned {scanned}) differs"
        );
    }
}

/// The `chunked` body decoder (`worker::http::ChunkedDecoder`). Input: the body limit (first
/// byte, times 4), the size of each read (second byte), then the wire bytes.
pub fn chunked(data: &[u8]) {
    let [max, step, wire @ ..] = data else {
        return;
    };
    let max = u64::from(*max) * 4;
    let step = usize::from(*step).max(1);
    let whole = decode_chunked(wire, wire.len().max(1), max);
    let split = decode_chunked(wire, step, max);
    assert_eq!(whole, split, "reads of {step} bytes decode differently");
    if let Ok((body, done)) = &whole {
        assert!(
            body.len() as u64 <= max,
            "body of {} past the limit {max}",
            body.len()
        );
        if let Some(done) = done {
            assert!(*done <= wire.len(), "done at {done} of {}", wire.len());
        }
    }
}

/// Feeds `wire` in reads of `step` bytes: the body and where it ended, or the error status.
fn decode_chunked(wire: &[u8], step: usize, max: u64) -> Result<(Vec<u8>, Option<usize>), u16> {
    let mut dec = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut at = 0;
    // What the connection keeps buffered: bytes fed but not consumed are fed again.
    let mut pending = 0;
    while at < wire.len() {
        let end = (at + pending + step).min(wire.len());
        let input = &wire[at..end];
        let progress = dec.feed(input, &mut body, max).map_err(|e| {
            assert!(e.close, "a body framing error keeps the connection");
            e.status
        })?;
        assert!(
            body.len() as u64 <= max,
            "body of {} past the limit {max}",
            body.len()
        );
        match progress {
            ChunkProgress::Done(n) => {
                assert!(n <= input.len(), "consumed {n} of {}", input.len());
                return Ok((body, Some(at + n)));
            }
            ChunkProgress::NeedMore(n) => {
                assert!(n <= input.len(), "consumed {n} of {}", input.len());
                at += n;
                pending = input.len() - n;
                if end == wire.len() && n == 0 {
                    break;
                }
            }
        }
    }
    Ok((body, None))
}

/// The query decoder (`worker::query`) and the strict number parsers.
pub fn query(data: &[u8]) {
    if let Ok(params) = Params::parse(data) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = params
            .pairs()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        let mut again = Vec::new();
        for (n, v) in &pairs {
            let name = std::str::from_utf8(n).ok();
            if let Some(name) = name {
                assert_eq!(params.get(name), Some(v.as_slice()), "get({name:?})");
                assert!(params.has(name));
            }
            assert!(!v.is_empty(), "an empty value is absent");
            if !again.is_empty() {
                again.push(b'&');
            }
            query::encode(n, &mut again);
            again.push(b'=');
            query::encode(v, &mut again);
        }
        // The pairs, encoded again, decode to themselves.
        let reparsed = Params::parse(&again).expect("an encoded query decodes");
        let back: Vec<(Vec<u8>, Vec<u8>)> = reparsed
            .pairs()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(back, pairs, "re-encoded pairs differ");
    }
    // Any bytes survive encode then decode.
    let mut enc = Vec::new();
    query::encode(data, &mut enc);
    assert_eq!(query::decode(&enc).as_deref(), Ok(data), "encode/decode");
    // The strict parsers agree with the standard library on what they accept.
    let text = std::str::from_utf8(data).ok();
    let digits = |d: &[u8]| !d.is_empty() && d.len() <= 19 && d.iter().all(u8::is_ascii_digit);
    match query::parse_u64(data) {
        Some(n) => assert_eq!(text.and_then(|t| t.parse::<u64>().ok()), Some(n)),
        None => assert!(!digits(data), "digits refused: {data:?}"),
    }
    let unsigned = data.strip_prefix(b"-").unwrap_or(data);
    match query::parse_i64(data) {
        Some(n) => assert_eq!(text.and_then(|t| t.parse::<i64>().ok()), Some(n)),
        None => assert!(
            !digits(unsigned) || text.and_then(|t| t.parse::<i64>().ok()).is_none(),
            "an i64 refused: {data:?}"
        ),
    }
}

/// The conf parser (`conf::parse_str`), on the text of a file that does not exist (relative
/// paths resolve under it; nothing is written).
pub fn conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/nonexistent/huststore-fuzz/huststore.conf");
    match conf::parse_str(&text, path) {
        Ok(conf) => {
            // Deterministic: the same text gives the same conf.
            let again = conf::parse_str(&text, path).expect("parsed once, not twice");
            assert_eq!(format!("{conf:?}"), format!("{again:?}"));
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
    }
}

/// The journal record decoder as replay runs it (`storage::decode_journal_record`).
pub fn journal_record(data: &[u8]) {
    if let Some(rec) = storage::decode_journal_record(data) {
        assert!(
            rec.taken <= data.len(),
            "record of {} in {}",
            rec.taken,
            data.len()
        );
        if let Some(changes) = &rec.changes {
            // A decoded record encodes to the same bytes.
            let enc = storage::encode_journal_record(rec.txnid, changes);
            assert_eq!(
                enc.as_slice(),
                &data[..rec.taken],
                "re-encoded record differs"
            );
        }
    }
    // A record made of these bytes (as a key and a value) decodes back to them.
    let change = (
        data.first().copied().unwrap_or(0),
        data.to_vec(),
        Some(data.to_vec()),
    );
    let enc = storage::encode_journal_record(42, std::slice::from_ref(&change));
    let back = storage::decode_journal_record(&enc).expect("an encoded record decodes");
    assert_eq!((back.txnid, back.taken), (42, enc.len()));
    assert_eq!(back.changes, Some(vec![change]));
}

/// The peer frame (`cluster::peer::frame::Frame`). Input: the receiver's group count (first
/// byte) and largest payload (next two, big-endian), then the stream's bytes.
pub fn peer_frame(data: &[u8]) {
    let [groups, hi, lo, buf @ ..] = data else {
        return;
    };
    let limits = Limits {
        groups: u32::from(*groups),
        max_payload: u32::from(u16::from_be_bytes([*hi, *lo])),
    };
    match Frame::decode_prefix(buf, &limits) {
        Ok(Some((frame, used))) => {
            assert!(used <= buf.len(), "frame of {used} in {}", buf.len());
            assert!(
                frame.group < limits.groups
                    && frame.payload.len() as u64 <= u64::from(limits.max_payload)
            );
            assert_eq!(
                frame.encode().as_deref(),
                Ok(&buf[..used]),
                "re-encoded frame differs"
            );
            assert_eq!(Frame::needed(buf, &limits), Ok(used));
            let one = Frame::decode(buf, &limits);
            if used == buf.len() {
                assert_eq!(one, Ok(frame));
            } else {
                assert!(one.is_err(), "trailing bytes accepted");
            }
        }
        Ok(None) => {
            let need = Frame::needed(buf, &limits).expect("an incomplete frame is not bad");
            assert!(need > buf.len(), "incomplete with {} of {need}", buf.len());
            assert!(Frame::decode(buf, &limits).is_err());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(Frame::decode(buf, &limits).is_err());
        }
    }
}

/// The payload decoders of peer messages: openraft's RPCs and their answers
/// (`cluster::raft::rpc_codec`), the answers to forwarded writes and read-index requests
/// (`cluster::net`), a log entry's batch of commands and a forwarded write's command (`storage::Command`, also a log entry's). The first byte picks the decoder. Each must refuse garbage, and what it
/// accepts must encode to bytes that decode and encode the same again.
pub fn peer_messages(data: &[u8]) {
    let Some((&which, buf)) = data.split_first() else {
        return;
    };
    macro_rules! stable {
        ($decode:expr, $encode:expr) => {
            if let Ok(v) = $decode(buf) {
                let enc = $encode(&v);
                let again = $decode(&enc).expect("an encoded message decodes");
                assert_eq!($encode(&again), enc, "encoding is not stable");
            }
        };
    }
    let command = |c: &storage::Command<'_>| {
        let mut out = Vec::new();
        c.encode(&mut out);
        out
    };
    match which % 10 {
        0 => stable!(
            rpc_codec::decode_vote_request,
            rpc_codec::encode_vote_request
        ),
        1 => stable!(
            rpc_codec::decode_append_request,
            rpc_codec::encode_append_request
        ),
        2 => stable!(
            rpc_codec::decode_snapshot_request,
            rpc_codec::encode_snapshot_request
        ),
        3 => stable!(rpc_codec::decode_vote_result, rpc_codec::encode_vote_result),
        4 => stable!(
            rpc_codec::decode_append_result,
            rpc_codec::encode_append_result
        ),
        5 => stable!(
            rpc_codec::decode_snapshot_result,
            rpc_codec::encode_snapshot_result
        ),
        6 => stable!(decode_write_result, encode_write_result),
        7 => stable!(decode_read_index, encode_read_index),
        8 => {
            // A log entry's batch of commands: its members, framed again, are its bytes.
            let entry = LogCommand {
                bytes: buf.to_vec(),
            };
            if let Ok(members) = entry.batch_members() {
                let cmds: Vec<LogCommand> = members
                    .iter()
                    .map(|m| LogCommand { bytes: m.to_vec() })
                    .collect();
                assert_eq!(
                    LogCommand::batch(&cmds),
                    entry,
                    "batch framing is not stable"
                );
            }
        }
        _ => stable!(storage::Command::decode, command),
    }
}
