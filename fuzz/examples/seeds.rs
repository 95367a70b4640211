//! Writes the hand-made starting seeds of every target into `fuzz/corpus/<target>/seed-*`:
//! well-formed inputs (encoded by our own encoders where there is one) from which the fuzzer
//! mutates, since it would hardly find a CRC-valid journal record or a whole append-entries
//! request alone. Run once when a format changes (`cargo run --example seeds` in `fuzz/`), then
//! `cargo fuzz cmin` each target; the corpora committed are the result.

use std::collections::BTreeMap;
use std::path::Path;

use cluster::net::{encode_read_index, encode_write_result, WriteError};
use cluster::peer::frame::{Frame, Kind};
use cluster::raft::rpc_codec::*;
use cluster::raft::{Applied, LogCommand, NodeId, TypeConfig};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest};
use openraft::raft::{InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use openraft::{SnapshotMeta, StoredMembership, Vote};
use storage::{Command, Write};

fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn membership() -> Membership<NodeId, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = (0..3)
        .map(|i| (i, BasicNode::new(format!("127.0.0.1:{}", 9000 + i))))
        .collect();
    Membership::new(vec![[0, 1, 2].into()], nodes)
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed");
}

fn command(c: &Command<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    c.encode(&mut out);
    out
}

fn main() {
    for (name, head) in [
        ("get", &b"GET /get?key=a HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        ("put", b"POST /put?key=k&ver=2 HTTP/1.1\r\nContent-Length: 3\r\nConnection: keep-alive\r\nAuthorization: Basic dTpw\r\n\r\nabc"),
        ("chunked", b"PUT /hset?tb=t&key=k HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nUser-Agent: f\r\nReferer: r\r\n\r\n"),
        ("http10", b"\r\nGET / HTTP/1.0\nConnection: close\nHust-Forwarded: 1\n\n"),
    ] {
        write("http_head", name, head);
    }
    for (name, body) in [
        (
            "two",
            &b"\xff\x015;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"[..],
        ),
        ("lf", b"\x10\x03a\nxxxxxxxxxx\n0\n\n"),
    ] {
        write("chunked", name, body);
    }
    write(
        "query",
        "pairs",
        b"key=a%20b+c%2B&val=%00%ff&tb=&flag&key=2",
    );
    write("query", "number", b"-9223372036854775808");
    let conf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    for dir in [conf_dir.clone(), conf_dir.join("cluster")] {
        for entry in std::fs::read_dir(&dir).expect("conf/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "conf") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                write("conf", &name, &std::fs::read(&path).expect("a conf"));
            }
        }
    }
    let rec = storage::encode_journal_record(
        7,
        &[
            (1, b"key".to_vec(), Some(b"val".to_vec())),
            (2, b"gone".to_vec(), None),
        ],
    );
    write("journal_record", "put-del", &rec);
    write(
        "journal_record",
        "empty",
        &storage::encode_journal_record(1, &[]),
    );

    let limits_prefix = [8u8, 0xff, 0xff];
    for (kind, payload) in [(Kind::Vote, &b"vote"[..]), (Kind::ReadIndex, b"")] {
        let frame = Frame {
            kind,
            group: 3,
            payload,
        }
        .encode()
        .expect("a frame");
        let mut seed = limits_prefix.to_vec();
        seed.extend_from_slice(&frame);
        write("peer_frame", kind.name().replace(' ', "-").as_str(), &seed);
    }

    let vote = {
        let mut v = Vote::new(7, 2);
        v.commit();
        v
    };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(log_id(6, 1, 9)),
        leader_commit: None,
        entries: vec![
            Entry {
                log_id: log_id(7, 2, 10),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(7, 2, 11),
                payload: EntryPayload::Normal(LogCommand {
                    bytes: b"a command".to_vec(),
                }),
            },
            Entry {
                log_id: log_id(7, 2, 12),
                payload: EntryPayload::Membership(membership()),
            },
        ],
    };
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: SnapshotMeta {
            last_log_id: Some(log_id(7, 2, 100)),
            last_membership: StoredMembership::new(Some(log_id(1, 0, 0)), membership()),
            snapshot_id: "7-2-100-3".into(),
        },
        offset: 4096,
        data: vec![1, 2, 3, 0, 255],
        done: true,
    };
    let put = Command {
        now_ms: 1_700_000_000_000,
        write: Write::Put {
            key: b"k",
            val: b"v",
            expires_at: 0,
            ver: 3,
        },
    };
    let messages: Vec<(&str, u8, Vec<u8>)> = vec![
        (
            "vote-request",
            0,
            encode_vote_request(&VoteRequest::new(vote, Some(log_id(2, 1, 5)))),
        ),
        ("append-request", 1, encode_append_request(&append)),
        ("snapshot-request", 2, encode_snapshot_request(&snapshot)),
        (
            "vote-result",
            3,
            encode_vote_result(&Ok(VoteResponse::new(vote, Some(log_id(2, 1, 5)), true))),
        ),
        (
            "vote-stopped",
            3,
            encode_vote_result(&Err(RaftError::Fatal(Fatal::Stopped))),
        ),
        (
            "append-result",
            4,
            encode_append_result(&Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(
                1, 1, 1,
            ))))),
        ),
        (
            "snapshot-result",
            5,
            encode_snapshot_result(&Ok(InstallSnapshotResponse { vote })),
        ),
        (
            "write-result",
            6,
            encode_write_result(&Ok(Applied::Counted { ver: 2, value: -5 })),
        ),
        (
            "write-not-leader",
            6,
            encode_write_result(&Err(WriteError::NotLeader { leader: Some(2) })),
        ),
        ("read-index", 7, encode_read_index(&Ok(Some(42)))),
        ("command-put", 8, command(&put)),
    ];
    for (name, which, bytes) in messages {
        let mut seed = vec![which];
        seed.extend_from_slice(&bytes);
        write("peer_messages", name, &seed);
    }
}
