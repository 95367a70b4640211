//! One group's view of the node's shared consensus log ([`LogStore`]): openraft's
//! `RaftLogStorage` and `RaftLogReader` over the [`LogEngine`]. Appends are acknowledged to
//! openraft by the engine's flusher after the group commit's one sync; a vote is durable
//! before `save_vote` returns; committed ids, truncations and purges are records made
//! durable by the next sync (losing them in a crash only brings back a state the log had).
//!
//! Appends write to the page cache from the async task itself: a short blocking write, while
//! the fsync that may take milliseconds runs on the flusher thread.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader};
use openraft::{StorageIOError, Vote};

use super::codec;
use super::engine::{Done, Records, COMMITTED, ENTRY, PURGE, TRUNCATE, VOTE};
use super::{LogEngine, NodeId, RaftStorageError, TypeConfig};

/// A group's log: a cheap handle on the node's shared engine.
#[derive(Clone)]
pub struct LogStore {
    engine: LogEngine,
    group: u32,
}

impl LogEngine {
    /// The log of `group` (a number the engine tags its records with).
    pub fn group(&self, group: u32) -> LogStore {
        LogStore {
            engine: self.clone(),
            group,
        }
    }
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: io::Error) -> RaftStorageError {
    RaftStorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::new(&e)),
    }
}

fn write_error(subject: ErrorSubject<NodeId>) -> impl FnOnce(io::Error) -> RaftStorageError {
    move |e| io_error(subject, ErrorVerb::Write, e)
}

fn read_error(subject: ErrorSubject<NodeId>) -> impl FnOnce(io::Error) -> RaftStorageError {
    move |e| io_error(subject, ErrorVerb::Read, e)
}

impl LogStore {
    /// The group this handle writes for.
    pub fn group_id(&self) -> u32 {
        self.group
    }

    fn record(&self, kind: u8, payload: impl FnOnce(&mut Vec<u8>)) -> Records {
        let mut records = Records::default();
        records.push(self.group, kind, payload);
        records
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<openraft::Entry<TypeConfig>>, RaftStorageError> {
        let read = || -> io::Result<Vec<openraft::Entry<TypeConfig>>> {
            let bodies = self.engine.read_entries(self.group, range)?;
            let entries = bodies.iter().map(|b| codec::decode_entry(b));
            entries
                .collect::<Result<_, _>>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        };
        read().map_err(read_error(ErrorSubject::Logs))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let view = self.engine.view(self.group);
        let view = view.map_err(read_error(ErrorSubject::Logs))?;
        Ok(LogState {
            last_purged_log_id: view.last_purged,
            last_log_id: view.last_log,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let records = self.record(VOTE, |out| codec::put_vote(out, vote));
        self.engine
            .write_durable(records)
            .await
            .map_err(write_error(ErrorSubject::Vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        let view = self.engine.view(self.group);
        Ok(view.map_err(read_error(ErrorSubject::Vote))?.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), RaftStorageError> {
        let records = self.record(COMMITTED, |out| codec::put_opt_log_id(out, &committed));
        self.engine
            .write(records, None)
            .map_err(write_error(ErrorSubject::Store))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, RaftStorageError> {
        let view = self.engine.view(self.group);
        Ok(view.map_err(read_error(ErrorSubject::Store))?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Records::default();
        for entry in entries {
            records.push(self.group, ENTRY, |out| codec::put_entry(out, &entry));
        }
        let done: Done = Box::new(move |r| callback.log_io_completed(r));
        self.engine
            .write(records, Some(done))
            .map_err(write_error(ErrorSubject::Logs))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let records = self.record(TRUNCATE, |out| codec::put_u64(out, log_id.index));
        self.engine
            .write(records, None)
            .map_err(write_error(ErrorSubject::Log(log_id)))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let records = self.record(PURGE, |out| codec::put_log_id(out, &log_id));
        self.engine
            .write(records, None)
            .map_err(write_error(ErrorSubject::Log(log_id)))
    }
}
