//! Round trips of every RPC and result, and garbage (random bytes, every cut and every
//! flipped byte of a good encoding) that each decoder refuses or reads without a panic.

use std::collections::BTreeMap;

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use openraft::{SnapshotMeta, SnapshotSegmentId, StoredMembership, Vote};

use super::*;
use crate::raft::LogCommand;

fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn membership() -> Membership<NodeId, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = (0..3)
        .map(|i| (i, BasicNode::new(format!("127.0.0.1:{}", 9000 + i))))
        .collect();
    Membership::new(vec![[0, 1, 2].into()], nodes)
}

fn committed_vote() -> Vote<NodeId> {
    let mut v = Vote::new(7, 2);
    v.commit();
    v
}

fn append_request() -> AppendEntriesRequest<TypeConfig> {
    let entries = vec![
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
    ];
    AppendEntriesRequest {
        vote: committed_vote(),
        prev_log_id: Some(log_id(6, 1, 9)),
        leader_commit: None,
        entries,
    }
}

fn snapshot_request() -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: committed_vote(),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(7, 2, 100)),
            last_membership: StoredMembership::new(Some(log_id(1, 0, 0)), membership()),
            snapshot_id: "7-2-100-3".into(),
        },
        offset: 4096,
        data: vec![1, 2, 3, 0, 255],
        done: true,
    }
}

fn storage_error() -> Fatal<NodeId> {
    let source = StorageIOError::new(
        ErrorSubject::Store,
        ErrorVerb::Write,
        AnyError::error("disk"),
    );
    Fatal::StorageError(RaftStorageError::IO { source })
}

/// The encodings of one of each message and result.
fn samples() -> Vec<Vec<u8>> {
    let vote_results: Vec<RaftResult<VoteResponse<NodeId>>> = vec![
        Ok(VoteResponse::new(
            Vote::new(3, 1),
            Some(log_id(2, 1, 5)),
            true,
        )),
        Ok(VoteResponse::new(committed_vote(), None, false)),
        Err(RaftError::Fatal(Fatal::Stopped)),
        Err(RaftError::Fatal(storage_error())),
    ];
    let append_results: Vec<RaftResult<AppendEntriesResponse<NodeId>>> = vec![
        Ok(AppendEntriesResponse::Success),
        Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(1, 1, 1)))),
        Ok(AppendEntriesResponse::PartialSuccess(None)),
        Ok(AppendEntriesResponse::Conflict),
        Ok(AppendEntriesResponse::HigherVote(committed_vote())),
        Err(RaftError::Fatal(Fatal::Panicked)),
    ];
    let snapshot_results: Vec<SnapshotResult> = vec![
        Ok(InstallSnapshotResponse {
            vote: committed_vote(),
        }),
        Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
            SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: "a".into(),
                    offset: 0,
                },
                got: SnapshotSegmentId {
                    id: "b".into(),
                    offset: 9,
                },
            },
        ))),
    ];
    let mut out = vec![
        encode_vote_request(&VoteRequest::new(Vote::new(3, 1), Some(log_id(2, 1, 5)))),
        encode_append_request(&append_request()),
        encode_snapshot_request(&snapshot_request()),
    ];
    out.extend(vote_results.iter().map(encode_vote_result));
    out.extend(append_results.iter().map(encode_append_result));
    out.extend(snapshot_results.iter().map(encode_snapshot_result));
    out
}

/// Each decoder's answer to `buf`, as text (openraft's errors do not all compare).
fn decode_all(buf: &[u8]) -> [String; 6] {
    [
        format!("{:?}", decode_vote_request(buf)),
        format!("{:?}", decode_append_request(buf)),
        format!("{:?}", decode_snapshot_request(buf)),
        format!("{:?}", decode_vote_result(buf)),
        format!("{:?}", decode_append_result(buf)),
        format!("{:?}", decode_snapshot_result(buf)),
    ]
}

#[test]
fn requests_round_trip() {
    let vote = VoteRequest::new(committed_vote(), None);
    assert_eq!(decode_vote_request(&encode_vote_request(&vote)), Ok(vote));
    let append = append_request();
    let back = decode_append_request(&encode_append_request(&append)).expect("append");
    assert_eq!(format!("{back:?}"), format!("{append:?}"));
    let snap = snapshot_request();
    let back = decode_snapshot_request(&encode_snapshot_request(&snap)).expect("snapshot");
    assert_eq!(format!("{back:?}"), format!("{snap:?}"));
}

#[test]
fn results_round_trip() {
    let ok: RaftResult<VoteResponse<NodeId>> = Ok(VoteResponse::new(
        Vote::new(3, 1),
        Some(log_id(2, 1, 5)),
        true,
    ));
    let back = decode_vote_result(&encode_vote_result(&ok)).expect("vote");
    assert_eq!(format!("{back:?}"), format!("{ok:?}"));
    for r in [
        Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(1, 1, 1)))),
        Ok(AppendEntriesResponse::HigherVote(committed_vote())),
        Err(RaftError::Fatal(Fatal::Stopped)),
    ] {
        let back = decode_append_result(&encode_append_result(&r)).expect("append");
        assert_eq!(format!("{back:?}"), format!("{r:?}"));
    }
    let err: RaftResult<AppendEntriesResponse<NodeId>> = Err(RaftError::Fatal(storage_error()));
    match decode_append_result(&encode_append_result(&err)) {
        Ok(Err(RaftError::Fatal(Fatal::StorageError(e)))) => {
            assert!(e.to_string().contains("disk"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Relayed again, the error keeps its text (the fuzzer found it growing by a prefix a round).
    let once = encode_append_result(&decode_append_result(&encode_append_result(&err)).unwrap());
    let twice = encode_append_result(&decode_append_result(&once).unwrap());
    assert_eq!(once, twice);
    let mismatch: SnapshotResult = Err(RaftError::APIError(
        InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: ("x", 1).into(),
            got: ("y", 2).into(),
        }),
    ));
    let back = decode_snapshot_result(&encode_snapshot_result(&mismatch)).expect("snapshot");
    assert_eq!(format!("{back:?}"), format!("{mismatch:?}"));
}

#[test]
fn trailing_bytes_and_unknown_tags_are_refused() {
    let mut buf = encode_vote_request(&VoteRequest::new(Vote::new(1, 1), None));
    buf.push(0);
    assert_eq!(decode_vote_request(&buf), Err(CodecError));
    assert!(decode_append_result(&[9]).is_err());
    assert!(decode_vote_result(&[MISMATCH]).is_err());
    assert!(decode_append_result(&[OK, 7]).is_err());
}

#[test]
fn garbage_never_panics() {
    // Every cut and every flipped byte of good encodings, then random bytes.
    for good in samples() {
        for cut in 0..good.len() {
            decode_all(&good[..cut]);
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            decode_all(&bad);
        }
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 80) as usize;
        let buf: Vec<u8> = (0..len).map(|_| (next() % 6) as u8).collect();
        decode_all(&buf);
        let buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        decode_all(&buf);
    }
}
