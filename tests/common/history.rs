//! The recording and checking side of the Jepsen-style cluster test (issue 11): client threads
//! record every operation on huststore's kv API with its invocation and its completion (or
//! `unknown` after a `504`, a timeout or a lost connection: it may or may not have happened),
//! and at the end the history is checked: each key linearizable against the sequential model of
//! one huststore record (kv-api.md §2.5: version 1 on create, +1 per write, wrapping from
//! 4194303 to 1, `ver` mismatch `401` with the current version), versions only growing along
//! real time, every acknowledged write in every replica's final state, replicas identical.
//! The cluster test only drives clients and faults; everything here is plain data and std,
//! plus stateright's linearizability tester (`linear`).

pub mod end;
pub mod linear;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

// Each test file uses a part of it (as the rest of tests/common).
#[allow(unused_imports)]
pub use end::{check_acknowledged_writes, check_replicas_agree, check_versions_grow};
#[allow(unused_imports)]
pub use linear::{
    check_key_histories, check_key_histories_with_budget, cross_check, DEFAULT_STEP_BUDGET,
};

/// A client (one connection, one thread); ops of one client are normally sequential.
pub type Client = usize;

/// One persistent record: a plain KV key (`/put`, `/get`, `/del`) or a hash field (`/hset`,
/// `/hget`, `/hdel`, `/hincrby`). Each is its own register with its own version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Kv(String),
    Field { tb: String, field: String },
}

impl Key {
    pub fn kv(key: &str) -> Key {
        Key::Kv(key.to_string())
    }

    pub fn field(tb: &str, field: &str) -> Key {
        Key::Field {
            tb: tb.to_string(),
            field: field.to_string(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Key::Kv(k) => write!(f, "key {k:?}"),
            Key::Field { tb, field } => write!(f, "field {field:?} of table {tb:?}"),
        }
    }
}

/// What a client asked of one record. On a `Key::Field`, `Put` is `/hset`, `Get` `/hget`,
/// `Del` `/hdel`; `Hincrby` is meant for fields (the model would apply it to any record).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `/put` (`/hset`) without `ver`.
    Put {
        val: String,
    },
    /// `/put?ver=N` (CAS). `ver` 0 is unconditional, as in the API.
    PutIfVersion {
        val: String,
        ver: u32,
    },
    Get,
    /// `/del` (`/hdel`) without `ver`.
    Del,
    /// `/hincrby?val=delta` without `ver`.
    Hincrby {
        delta: i64,
    },
}

/// An operation: a call on one record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub key: Key,
    pub call: Call,
}

impl Op {
    pub fn put(key: &Key, val: &str) -> Op {
        Op {
            key: key.clone(),
            call: Call::Put {
                val: val.to_string(),
            },
        }
    }

    pub fn put_if_version(key: &Key, val: &str, ver: u32) -> Op {
        Op {
            key: key.clone(),
            call: Call::PutIfVersion {
                val: val.to_string(),
                ver,
            },
        }
    }

    pub fn get(key: &Key) -> Op {
        Op {
            key: key.clone(),
            call: Call::Get,
        }
    }

    pub fn del(key: &Key) -> Op {
        Op {
            key: key.clone(),
            call: Call::Del,
        }
    }

    pub fn hincrby(key: &Key, delta: i64) -> Op {
        Op {
            key: key.clone(),
            call: Call::Hincrby { delta },
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.call {
            Call::Put { val } => write!(f, "put {} val={val:?}", self.key),
            Call::PutIfVersion { val, ver } => write!(f, "put {} val={val:?} ver={ver}", self.key),
            Call::Get => write!(f, "get {}", self.key),
            Call::Del => write!(f, "del {}", self.key),
            Call::Hincrby { delta } => write!(f, "hincrby {} val={delta}", self.key),
        }
    }
}

/// A definite answer (the status and the headers that matter, kv-api.md §2.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `put`/`hset`/CAS `200`: `Version` after the write.
    Written { version: u32 },
    /// `401` with `VerError: true`: the current version (0 if absent); nothing changed.
    Mismatch { current: u32 },
    /// `get`/`hget` `200`: body and `Version`.
    Value { val: String, version: u32 },
    /// `get`/`del` `404`.
    NotFound,
    /// `del` `200`: the version the record had.
    Deleted { version: u32 },
    /// `hincrby` `200`: the new value (the body) and `Version`.
    Incremented { value: i64, version: u32 },
    /// `hincrby` `409`: the stored value is not an integer, or the sum overflows.
    NotNumber,
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Ret::Written { version } => write!(f, "200 version {version}"),
            Ret::Mismatch { current } => write!(f, "401 version mismatch, current {current}"),
            Ret::Value { val, version } => write!(f, "200 {val:?} version {version}"),
            Ret::NotFound => write!(f, "404"),
            Ret::Deleted { version } => write!(f, "200 deleted version {version}"),
            Ret::Incremented { value, version } => write!(f, "200 {value} version {version}"),
            Ret::NotNumber => write!(f, "409 not a number"),
        }
    }
}

/// A record as a replica holds it at the end (absent records are absent from the map).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    pub val: String,
    pub version: u32,
}

impl Record {
    pub fn new(val: &str, version: u32) -> Record {
        Record {
            val: val.to_string(),
            version,
        }
    }
}

/// The final records of each replica of one group: replica name -> key -> record.
pub type Replicas = BTreeMap<String, BTreeMap<Key, Record>>;

/// The version after `v`: kv-api.md §2.5 wraps from 4194303 back to 1; 0 (absent) gives 1.
pub fn next_version(v: u32) -> u32 {
    if v >= MAX_VERSION {
        1
    } else {
        v + 1
    }
}

/// The highest version before the wrap (kv-api.md §2.5).
pub const MAX_VERSION: u32 = 4_194_303;

/// An integer as `/hincrby` accepts a stored value: an optional `-` then ASCII digits fitting
/// i64 (kv-api.md §4); Rust's `parse` would also take a leading `+`.
pub fn parse_stored_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The sequential model of one huststore record: applies `call` and gives the answer a single
/// correct node gives (kv-api.md §2.5, §3, §4 `/hincrby`).
pub fn apply(rec: &mut Option<Record>, call: &Call) -> Ret {
    let current = rec.as_ref().map_or(0, |r| r.version);
    match call {
        Call::Get => match rec {
            Some(r) => Ret::Value {
                val: r.val.clone(),
                version: r.version,
            },
            None => Ret::NotFound,
        },
        Call::Put { val } => write(rec, val.clone()),
        Call::PutIfVersion { val, ver } => {
            if *ver != 0 && *ver != current {
                return Ret::Mismatch { current };
            }
            write(rec, val.clone())
        }
        Call::Del => match rec.take() {
            Some(r) => Ret::Deleted { version: r.version },
            None => Ret::NotFound,
        },
        Call::Hincrby { delta } => {
            let old = match rec {
                Some(r) => parse_stored_integer(&r.val),
                None => Some(0),
            };
            match old.and_then(|o| o.checked_add(*delta)) {
                Some(value) => {
                    let version = next_version(current);
                    *rec = Some(Record {
                        val: value.to_string(),
                        version,
                    });
                    Ret::Incremented { value, version }
                }
                None => Ret::NotNumber,
            }
        }
    }
}

fn write(rec: &mut Option<Record>, val: String) -> Ret {
    let version = next_version(rec.as_ref().map_or(0, |r| r.version));
    *rec = Some(Record { val, version });
    Ret::Written { version }
}

/// Identifies one recorded operation (its index in the history).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// How an operation ended, as far as its client knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not completed yet; checked like `Unknown` (it may still take effect).
    Pending,
    /// A definite answer.
    Ok(Ret),
    /// `504`, a timeout, a connection error: it may have taken effect at any time after its
    /// invocation, or never (Jepsen's `:info`).
    Unknown,
    /// Definitely did not take effect (`500`, `507`, a refused connection): dropped from the
    /// checks (Jepsen's `:fail`).
    Failed,
}

/// One operation as recorded. `inv_seq`/`done_seq` order every invocation and completion of
/// the history in real time (taken under one lock); `invoked`/`done` are for people.
#[derive(Clone, Debug)]
pub struct OpRecord {
    pub id: OpId,
    pub client: Client,
    /// The node the request went to, when the recorder says (for people reading a violation).
    pub node: Option<usize>,
    pub op: Op,
    pub outcome: Outcome,
    pub inv_seq: u64,
    pub done_seq: Option<u64>,
    pub invoked: Duration,
    pub done: Option<Duration>,
}

impl OpRecord {
    /// Did this op complete (any outcome) before `other` was invoked?
    pub fn precedes(&self, other: &OpRecord) -> bool {
        self.done_seq.is_some_and(|d| d < other.inv_seq)
    }

    /// The definite answer, if any.
    pub fn ret(&self) -> Option<&Ret> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }

    /// Unknown or still pending: may or may not have happened.
    pub fn indefinite(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown | Outcome::Pending)
    }
}

impl fmt::Display for OpRecord {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "op #{} client {} {}", self.id.0, self.client, self.op)?;
        if let Some(node) = self.node {
            write!(f, " on node {node}")?;
        }
        write!(f, " -> ")?;
        match &self.outcome {
            Outcome::Pending => write!(f, "pending")?,
            Outcome::Ok(r) => write!(f, "{r}")?,
            Outcome::Unknown => write!(f, "unknown")?,
            Outcome::Failed => write!(f, "failed")?,
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match self.done {
            Some(d) => write!(f, " [{:.3} ms .. {:.3} ms]", ms(self.invoked), ms(d)),
            None => write!(f, " [{:.3} ms .. ]", ms(self.invoked)),
        }
    }
}

/// The shared recorder: `&History` is used from every client thread.
pub struct History {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    seq: u64,
    ops: Vec<OpRecord>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> History {
        History {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                seq: 0,
                ops: Vec::new(),
            }),
        }
    }

    /// Records an invocation; call it just before the request is sent.
    pub fn invoke(&self, client: Client, op: Op) -> OpId {
        self.invoke_on(client, None, op)
    }

    /// [`History::invoke`] of a request sent to `node` (shown with the op).
    pub fn invoke_on(&self, client: Client, node: Option<usize>, op: Op) -> OpId {
        let mut inner = self.lock();
        let inv_seq = inner.tick();
        let id = OpId(inner.ops.len());
        let invoked = self.start.elapsed();
        inner.ops.push(OpRecord {
            id,
            client,
            node,
            op,
            outcome: Outcome::Pending,
            inv_seq,
            done_seq: None,
            invoked,
            done: None,
        });
        id
    }

    /// Records a definite answer; call it just after the response arrived.
    pub fn complete(&self, id: OpId, ret: Ret) {
        self.finish(id, Outcome::Ok(ret));
    }

    /// Records that the op may or may not have happened (`504`, timeout, connection error).
    pub fn unknown(&self, id: OpId) {
        self.finish(id, Outcome::Unknown);
    }

    /// Records that the op definitely did not happen.
    pub fn failed(&self, id: OpId) {
        self.finish(id, Outcome::Failed);
    }

    /// A copy of every op recorded so far, in invocation order.
    pub fn ops(&self) -> Vec<OpRecord> {
        self.lock().ops.clone()
    }

    /// The ops on each key, in invocation order.
    pub fn by_key(&self) -> BTreeMap<Key, Vec<OpRecord>> {
        let mut keys: BTreeMap<Key, Vec<OpRecord>> = BTreeMap::new();
        for op in self.ops() {
            keys.entry(op.op.key.clone()).or_default().push(op);
        }
        keys
    }

    /// The ops `keep` selects, ids and real-time order kept (for the end checks, called once
    /// per group with the ops on the keys that group owns; or to tell which kind of op a
    /// violation needs). Not for recording further.
    pub fn filtered(&self, keep: impl Fn(&OpRecord) -> bool) -> History {
        let inner = self.lock();
        History {
            start: self.start,
            inner: Mutex::new(Inner {
                seq: inner.seq,
                ops: inner.ops.iter().filter(|o| keep(o)).cloned().collect(),
            }),
        }
    }

    fn finish(&self, id: OpId, outcome: Outcome) {
        let done = self.start.elapsed();
        let mut inner = self.lock();
        let seq = inner.tick();
        let rec = &mut inner.ops[id.0];
        assert_eq!(
            rec.outcome,
            Outcome::Pending,
            "{} completed twice",
            rec.id.0
        );
        rec.outcome = outcome;
        rec.done_seq = Some(seq);
        rec.done = Some(done);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A client thread that panicked while holding the lock left whole records behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn tick(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Why a history or the final state is wrong, with the key and the ops that show it.
#[derive(Clone, Debug)]
pub enum Violation {
    /// No linearization of the key's history exists; `op` is the first completion that none
    /// explains, `context` the ops overlapping it and the last ones before it.
    NotLinearizable {
        key: Key,
        op: Box<OpRecord>,
        context: Vec<OpRecord>,
    },
    /// The linearizability search ran out of its step budget: neither proved nor refuted.
    Undecided { key: Key, ops: usize, budget: u64 },
    /// `later` began after `earlier` completed, with no delete possibly between, yet saw an
    /// older version (or wrote the same one again).
    VersionWentBack {
        key: Key,
        earlier: Box<OpRecord>,
        later: Box<OpRecord>,
    },
    /// An acknowledged write (or delete) is not in a replica's final state.
    LostWrite {
        key: Key,
        replica: String,
        write: Box<OpRecord>,
        found: Option<Record>,
    },
    /// A replica holds a value that no operation wrote.
    NeverWritten {
        key: Key,
        replica: String,
        record: Record,
    },
    /// The replicas of one group hold different records for the key.
    ReplicasDiffer {
        key: Key,
        records: Vec<(String, Option<Record>)>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Violation::NotLinearizable { key, op, context } => {
                writeln!(f, "{key}: history not linearizable; nothing explains")?;
                writeln!(f, "    {op}")?;
                writeln!(f, "  given these ops (overlapping it, or the last before it):")?;
                for c in context {
                    writeln!(f, "    {c}")?;
                }
                Ok(())
            }
            Violation::Undecided { key, ops, budget } => write!(
                f,
                "{key}: linearizability undecided: {ops} ops, search budget of {budget} steps spent"
            ),
            Violation::VersionWentBack { key, earlier, later } => write!(
                f,
                "{key}: version went back:\n    {earlier}\n  completed before\n    {later}"
            ),
            Violation::LostWrite { key, replica, write, found } => write!(
                f,
                "{key}: acknowledged write lost on replica {replica}:\n    {write}\n  replica holds {}",
                show_record(found)
            ),
            Violation::NeverWritten { key, replica, record } => write!(
                f,
                "{key}: replica {replica} holds {}, which no op wrote",
                show_record(&Some(record.clone()))
            ),
            Violation::ReplicasDiffer { key, records } => {
                writeln!(f, "{key}: replicas differ:")?;
                for (name, rec) in records {
                    writeln!(f, "    {name}: {}", show_record(rec))?;
                }
                Ok(())
            }
        }
    }
}

fn show_record(rec: &Option<Record>) -> String {
    match rec {
        Some(r) => format!("{:?} version {}", r.val, r.version),
        None => "no record".to_string(),
    }
}
