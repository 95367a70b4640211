//! [`PassEnv`]: one environment (persistent or cache) and its transactions during one loop
//! pass, with the request runner every write goes through. A [`crate::Batch`] holds two, one
//! per environment. It knows the bottom layer and [`crate::command`], never the journal's
//! files (the batch hands it the pass's change record) or the batch.
//!
//! # Two ways to run a write request
//!
//! Every write is split in two (see [`command::apply`]): a check that only reads (it gets
//! `&RwTransaction`, so it cannot change anything) and decides every refusal (`NotFound`,
//! `VersionMismatch`, `WrongType`, `NotNumeric`, `TooLarge`, `Invalid`, and `MapFull` from the
//! byte accounting or the table limit), then an [`crate::txn::Apply`] step that makes the
//! changes and can only fail the way LMDB fails (a real `MDB_MAP_FULL`, I/O).
//!
//! - `write_map` off: each request runs in a nested transaction of the pass, so any failure
//!   undoes that request alone.
//! - `write_map` on (`StoreOptions::write_map`, LMDB's `MDB_WRITEMAP`, which has no nested
//!   transactions): each request runs straight in the pass's transaction, the file's blocks
//!   allocated between check and changes (see `room`). A refused check has changed nothing,
//!   so the pass goes on; a failure once the changes started leaves the request half done,
//!   so the request is reported as poisoning: the batch then fails every later read or write
//!   of the pass and [`crate::Batch::commit`] aborts and returns an error (the worker answers
//!   the whole pass with 500).

#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};

use lmdb::{RoTransaction, RwTransaction, Transaction};

use crate::command::{self, Command, Failed, Outcome};
use crate::env::{begin, nested, txn_failed, DataCtx, Dbs, Target};
use crate::room::{reserve_blocks, Alloc, Pass};
use crate::store::Store;
use crate::txn::{Apply, Ops, Reader, Wtx};
use crate::{Result, StorageError};

/// What a step runs between its check and its first change (file blocks with `write_map`).
type BeforeChanges<'b> = &'b mut dyn FnMut(&mut Pass) -> Result<()>;
/// What a step answers: its result, or how it failed.
type StepResult<T> = std::result::Result<T, Failed>;

/// How a request failed: `poisoned` when the pass's transaction can no longer commit.
pub(crate) struct Failure {
    pub error: StorageError,
    pub poisoned: bool,
}

impl Failure {
    fn kept(error: StorageError) -> Failure {
        Failure {
            error,
            poisoned: false,
        }
    }
}

fn bad_txn() -> StorageError {
    StorageError::Lmdb(lmdb::Error::BadTxn)
}

/// One environment and its transactions of this pass: a read transaction until the first
/// write opens the write transaction, the pass's room accounting, and what the runner needs.
pub(crate) struct PassEnv<'s> {
    target: Target<'s>,
    alloc: &'s Alloc,
    /// Requests run straight in `rw` (else each in a nested transaction).
    write_map: bool,
    ro: Option<RoTransaction<'s>>,
    rw: Option<RwTransaction<'s>>,
    pass: Pass,
    /// Tests: the next request fails as if by an I/O error once its changes are made.
    #[cfg(test)]
    fail_next_apply: &'s AtomicBool,
}

impl<'s> PassEnv<'s> {
    /// The persistent environment of `s`.
    pub fn data(s: &'s Store) -> PassEnv<'s> {
        PassEnv::new(s, Target::Data(s.data_ctx()), &s.alloc)
    }

    /// The cache environment of `s`.
    pub fn cache(s: &'s Store) -> PassEnv<'s> {
        PassEnv::new(s, Target::Cache(s.cache_ctx()), &s.calloc)
    }

    fn new(s: &'s Store, target: Target<'s>, alloc: &'s Alloc) -> PassEnv<'s> {
        PassEnv {
            target,
            alloc,
            write_map: s.write_map,
            ro: None,
            rw: None,
            pass: Pass::default(),
            #[cfg(test)]
            fail_next_apply: &s.fail_next_apply,
        }
    }

    /// The pass's view: the write transaction once open, else the read transaction (begun
    /// on first use).
    pub fn reader(&mut self) -> Result<Reader<'_, 's>> {
        if let Some(rw) = &self.rw {
            return Ok(Reader::Rw(rw));
        }
        let ro = match self.ro {
            Some(ref ro) => ro,
            None => self
                .ro
                .insert(begin(self.target.env(), |e| e.begin_ro_txn())?),
        };
        Ok(Reader::Ro(ro))
    }

    /// The write transaction is open.
    pub fn writing(&self) -> bool {
        self.rw.is_some()
    }

    /// Opens the pass's write transaction (taking LMDB's write lock, which serialises the
    /// worker processes) unless it is open. The read snapshot is older than anything the
    /// write transaction sees, so it goes, so as not to pin old pages, unless `keep_ro` (a
    /// value was lent from it).
    pub fn open_rw(&mut self, keep_ro: bool) -> Result<()> {
        if self.rw.is_none() {
            if !keep_ro {
                self.ro = None;
            }
            let start = std::time::Instant::now();
            self.rw = Some(begin(self.target.env(), |e| e.begin_rw_txn())?);
            crate::step_done(crate::Step::WriteLockWait, start);
            self.pass = Pass::default();
        }
        Ok(())
    }

    /// Ends the read transaction.
    pub fn end_reads(&mut self) {
        self.ro = None;
    }

    /// The write transaction, to commit; `None` when the pass wrote nothing here.
    pub fn take_rw(&mut self) -> Option<RwTransaction<'s>> {
        self.rw.take()
    }

    /// Aborts the write transaction.
    pub fn abort(&mut self) {
        self.rw = None;
    }

    /// Runs one write request, `cmd`, against the open write transaction (see the module
    /// docs); `ops` records its changes for the journal (persistent store with `write_map`
    /// only).
    pub fn run(
        &mut self,
        cmd: &Command<'_>,
        ops: Option<(&mut Ops, &Dbs)>,
    ) -> std::result::Result<Outcome, Failure> {
        let target = self.target;
        self.run_step(ops, |w, pass, before| {
            command::apply(cmd, w, pass, target, before)
        })
    }

    /// Runs a checked change of the persistent store that is not a command (a slot
    /// snapshot's import) the way [`PassEnv::run`] runs a command: `check` reads only and
    /// decides every refusal, then the plan's changes are made.
    pub fn run_checked<P: Apply<Dbs>>(
        &mut self,
        ops: Option<(&mut Ops, &Dbs)>,
        cx: &DataCtx<'_>,
        check: impl FnOnce(&RwTransaction<'_>, &mut Pass) -> Result<P>,
    ) -> std::result::Result<P::Out, Failure> {
        self.run_step(ops, |w, pass, before| {
            command::checked(w, pass, cx, check, before)
        })
    }

    /// The request runner: `step` gets the write transaction (nested without `write_map`),
    /// the pass's room, and what must run between its check and its first change.
    fn run_step<T>(
        &mut self,
        ops: Option<(&mut Ops, &Dbs)>,
        step: impl FnOnce(&mut Wtx<'_, '_>, &mut Pass, BeforeChanges<'_>) -> StepResult<T>,
    ) -> std::result::Result<T, Failure> {
        let target = self.target;
        let injected = self.injected();
        let Some(rw) = self.rw.as_mut() else {
            return Err(Failure::kept(bad_txn()));
        };
        let mark = self.pass.mark();
        if !self.write_map {
            // No journal without write_map: a nested transaction's changes are not recorded.
            debug_assert!(ops.is_none());
            let mut txn = nested(rw).map_err(Failure::kept)?;
            let mut w = Wtx::new(&mut txn, None);
            let r = step(&mut w, &mut self.pass, &mut |_| Ok(()))
                .map_err(|f| match f {
                    Failed::Refused(e) | Failed::Broken(e) => e,
                })
                .and_then(|out| injected().map(|()| out))
                .and_then(|out| {
                    txn.commit()?;
                    Ok(out)
                });
            if r.is_err() {
                self.pass.rewind(mark);
            }
            return r.map_err(Failure::kept);
        }
        let (env, room, alloc) = (target.env(), target.room(), self.alloc);
        let mut w = Wtx::new(rw, ops);
        let mut before_changes = |p: &mut Pass| reserve_blocks(env, room, alloc, p);
        match step(&mut w, &mut self.pass, &mut before_changes) {
            Ok(out) => match injected() {
                Ok(()) => Ok(out),
                Err(error) => Err(Failure {
                    error,
                    poisoned: true,
                }),
            },
            Err(Failed::Refused(error)) => {
                self.pass.rewind(mark);
                // A refusal changed nothing; only an LMDB failure of a read may have flagged
                // the transaction.
                let poisoned =
                    matches!(error, StorageError::Lmdb(_)) && txn_failed(w.view(), target.probe());
                Err(Failure { error, poisoned })
            }
            Err(Failed::Broken(error)) => Err(Failure {
                error,
                poisoned: true,
            }),
        }
    }

    /// Whether this pass's writes added bytes to the environment.
    pub(crate) fn grew(&self) -> bool {
        self.pass.mark() > 0
    }

    /// Runs `f` on the open write transaction: in a nested transaction without `write_map`,
    /// else straight, after the file's blocks are allocated, any failure of `f` poisoning.
    pub fn run_raw<T>(
        &mut self,
        f: impl FnOnce(&mut RwTransaction<'_>) -> Result<T>,
    ) -> std::result::Result<T, Failure> {
        let Some(rw) = self.rw.as_mut() else {
            return Err(Failure::kept(bad_txn()));
        };
        if self.write_map {
            let (env, room) = (self.target.env(), self.target.room());
            reserve_blocks(env, room, self.alloc, &mut self.pass)
                .map_err(Failure::kept)
                .and_then(|()| {
                    f(rw).map_err(|error| Failure {
                        error,
                        poisoned: true,
                    })
                })
        } else {
            nested(rw)
                .and_then(|mut txn| {
                    let v = f(&mut txn)?;
                    txn.commit()?;
                    Ok(v)
                })
                .map_err(Failure::kept)
        }
    }

    /// The physical room check of [`crate::Batch::ensure_room`].
    pub fn ensure_room(&mut self, bytes: u64) -> Result<()> {
        let (env, room) = (self.target.env(), self.target.room());
        self.pass.charge_physical(env, room, bytes)
    }

    /// Tests: the failure `fail_next_apply` asks for, once, after a request's changes.
    #[cfg(test)]
    fn injected(&self) -> impl Fn() -> Result<()> + 's {
        let flag = self.fail_next_apply;
        move || match flag.swap(false, Ordering::Relaxed) {
            true => Err(StorageError::Lmdb(lmdb::Error::Other(libc::EIO))),
            false => Ok(()),
        }
    }

    #[cfg(not(test))]
    fn injected(&self) -> impl Fn() -> Result<()> + 's {
        || Ok(())
    }
}
