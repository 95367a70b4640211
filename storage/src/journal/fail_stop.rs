//! Fail-stop after a failed flush, as PostgreSQL decided after "fsyncgate": Linux reports a
//! writeback error once (to each open file description) and may then drop the dirty pages,
//! so the next `fdatasync` of the same file succeeds although data it was meant to cover is
//! gone. After one failed `fdatasync` of the journal or `msync` of the data file (at a
//! checkpoint, after an mq-mode commit, or the periodic sync of `sync_writes off`), nothing
//! the daemon writes may be acknowledged any more: [`FailStop`] is the flag every worker sees
//! (in memory the master maps before forking), plus a marker file in the journal folder that
//! tells the next daemon to recover from the last good checkpoint (see `Journal::open`), or,
//! without a journal, that the last daemon stopped ([`open_without_journal`]).
//!
//! It also holds the test-only fault switch (`debug_fail_flush N`, `debug_fail_checkpoint N`):
//! the nth journal flush (or commit sync, or periodic sync), or the nth checkpoint sync,
//! counted over the whole daemon, fails with `EIO` instead of being done.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The marker file in the journal folder: its content is the pid of the master of the daemon
/// that stopped.
const MARKER: &str = "fail-stop";

/// The state shared by every process of a daemon. Plain atomics, valid when all zero, so that
/// it can live in an anonymous shared mapping (`worker::SharedMetrics`).
#[repr(C)]
#[derive(Default)]
pub struct FailState {
    /// 1 once a flush failed.
    tripped: AtomicU64,
    /// Journal flushes (and mq-mode commit syncs, and `sync_writes off`'s periodic syncs)
    /// begun, for the fault switch: a daemon does only one of the three kinds.
    flushes: AtomicU64,
    /// Checkpoint syncs begun, for the fault switch.
    checkpoints: AtomicU64,
}

/// A handle on the daemon's [`FailState`] and the fault switch; cheap to copy.
#[derive(Clone, Copy)]
pub struct FailStop {
    state: &'static FailState,
    /// The nth flush fails (0: none). Test-only.
    fail_flush: u64,
    /// The nth checkpoint sync fails (0: none). Test-only.
    fail_checkpoint: u64,
}

impl fmt::Debug for FailStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailStop")
            .field("tripped", &self.is_tripped())
            .field("fail_flush", &self.fail_flush)
            .field("fail_checkpoint", &self.fail_checkpoint)
            .finish()
    }
}

impl Default for FailStop {
    /// A state of this process alone (tests, tools, the cluster helper).
    fn default() -> FailStop {
        FailStop::shared(Box::leak(Box::default()))
    }
}

impl FailStop {
    /// The handle on `state`, which every process of the daemon maps.
    pub fn shared(state: &'static FailState) -> FailStop {
        FailStop {
            state,
            fail_flush: 0,
            fail_checkpoint: 0,
        }
    }

    /// Tests (`debug_fail_flush`, `debug_fail_checkpoint`): the `flush`th journal flush and
    /// the `checkpoint`th checkpoint sync of the daemon fail with `EIO` (0: never).
    pub fn with_faults(self, flush: u64, checkpoint: u64) -> FailStop {
        FailStop {
            fail_flush: flush,
            fail_checkpoint: checkpoint,
            ..self
        }
    }

    /// True once a flush of this daemon failed: no write may be acknowledged.
    pub fn is_tripped(&self) -> bool {
        self.state.tripped.load(Ordering::Acquire) != 0
    }

    /// A flush of `file` failed with `e`: the daemon stops acknowledging writes. The first
    /// process to trip logs it at `alert` and, with a journal, leaves the marker in
    /// `journal_dir`; the others stay quiet.
    pub(crate) fn trip(
        &self,
        what: &str,
        file: &Path,
        e: &dyn fmt::Display,
        journal: Option<&Path>,
    ) {
        if self
            .state
            .tripped
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        conf::alert!(
            "{what} of {} failed: {e}; the daemon acknowledges no further write (writes are \
             answered 503) until it is restarted, which recovers from the last good checkpoint",
            file.display()
        );
        if let Some(dir) = journal {
            if let Err(e) = write_marker(dir) {
                log::error!("could not write {}: {e}", dir.join(MARKER).display());
            }
        }
    }

    /// Sets the flag without a log line or marker: a daemon that finds the marker of one
    /// still running (a binary upgrade of a stopped daemon) is stopped as well.
    pub(crate) fn inherit(&self) {
        self.state.tripped.store(1, Ordering::Release);
    }

    /// Counts a journal flush (or a commit sync, or a periodic sync); the injected error if it
    /// is the one to fail.
    pub(crate) fn flush_fault(&self) -> Option<io::Error> {
        fault(&self.state.flushes, self.fail_flush)
    }

    /// Counts a checkpoint sync; the injected error if it is the one to fail.
    pub(crate) fn checkpoint_fault(&self) -> Option<io::Error> {
        fault(&self.state.checkpoints, self.fail_checkpoint)
    }
}

fn fault(counter: &AtomicU64, nth: u64) -> Option<io::Error> {
    if nth == 0 {
        return None;
    }
    let n = counter.fetch_add(1, Ordering::AcqRel) + 1;
    (n == nth).then(|| io::Error::from_raw_os_error(libc::EIO))
}

fn marker_path(journal: &Path) -> PathBuf {
    journal.join(MARKER)
}

/// Best effort on a disk that just failed: the marker written and flushed with its folder
/// (made first: a store without a journal has none yet).
fn write_marker(journal: &Path) -> io::Result<()> {
    fs::create_dir_all(journal)?;
    let path = marker_path(journal);
    let mut f = fs::File::create(&path)?;
    writeln!(f, "{}", std::os::unix::process::parent_id())?;
    f.sync_all()?;
    fs::File::open(journal)?.sync_all()
}

/// What the marker in `journal` says: `None` without one; `Some(true)` when the daemon that
/// left it still runs (its master is this process's parent, or a live process of the same
/// name: a binary upgrade's old master), `Some(false)` when it is gone and the store is to be
/// recovered. `/proc/<pid>/comm` is readable by every user (the workers may run as `nobody`).
pub(crate) fn marker(journal: &Path) -> Option<bool> {
    let text = fs::read_to_string(marker_path(journal)).ok()?;
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Some(false);
    };
    let parent = std::os::unix::process::parent_id();
    let comm = |p: u32| fs::read_to_string(format!("/proc/{p}/comm")).ok();
    let alive = pid == parent || comm(pid).is_some_and(|c| Some(c) == comm(parent));
    Some(alive)
}

/// The recovery the marker asked for is done (its checkpoint stored).
pub(crate) fn clear_marker(journal: &Path) {
    match fs::remove_file(marker_path(journal)) {
        Ok(()) => {
            if let Ok(d) = fs::File::open(journal) {
                let _ = d.sync_all();
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::error!("could not remove {}: {e}", marker_path(journal).display()),
    }
}

/// The open of a store without a journal (`sync_writes off`, or mq mode): there is no
/// checkpoint to recover from, so the data file goes on as it is (what the page cache held
/// when the last daemon was killed); a marker of a daemon still running (a binary upgrade)
/// stops this one as well, one of a daemon that is gone is said at `notice` and removed.
pub(crate) fn open_without_journal(journal: &Path, fail: &FailStop) {
    if fail.is_tripped() {
        return;
    }
    match marker(journal) {
        None => {}
        Some(true) => {
            log::error!(
                "{} is fail-stopped (its marker names a running master): this worker \
                 acknowledges no write either",
                journal.parent().unwrap_or(journal).display()
            );
            fail.inherit();
        }
        Some(false) => {
            conf::notice!(
                "the last daemon stopped after a failed flush; without a journal there is \
                 nothing to replay: the store goes on from its data file as it is"
            );
            clear_marker(journal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_fault_fires_once_and_the_flag_is_shared() {
        let a = FailStop::default().with_faults(3, 0);
        let b = FailStop { ..a };
        assert!(a.flush_fault().is_none());
        assert!(b.flush_fault().is_none());
        assert_eq!(
            a.flush_fault().map(|e| e.raw_os_error()),
            Some(Some(libc::EIO))
        );
        assert!(b.flush_fault().is_none());
        assert!(a.checkpoint_fault().is_none(), "checkpoint faults are off");
        assert!(!b.is_tripped());
        a.trip("test flush", Path::new("/x"), &"EIO", None);
        assert!(b.is_tripped(), "a copy sees the flag");
        assert!(!FailStop::default().is_tripped(), "a fresh state does not");
    }

    #[test]
    fn the_marker_of_a_gone_daemon_asks_for_recovery() {
        let dir = crate::tests::TempDir::new("marker");
        assert_eq!(marker(dir.path()), None);
        FailStop::default().trip("test flush", Path::new("/x"), &"EIO", Some(dir.path()));
        // The "master" written is this test's parent: alive.
        assert_eq!(marker(dir.path()), Some(true));
        fs::write(marker_path(dir.path()), "4294967295").unwrap();
        assert_eq!(marker(dir.path()), Some(false), "no such process");
        fs::write(marker_path(dir.path()), "garbage").unwrap();
        assert_eq!(marker(dir.path()), Some(false));
        clear_marker(dir.path());
        assert_eq!(marker(dir.path()), None);
    }

    #[test]
    fn without_a_journal_the_marker_stops_or_is_cleared() {
        let dir = crate::tests::TempDir::new("marker-nojournal");
        let journal = dir.path().join("journal");
        // The folder does not exist yet: the trip makes it.
        FailStop::default().trip("test sync", Path::new("/x"), &"EIO", Some(&journal));
        let upgraded = FailStop::default();
        open_without_journal(&journal, &upgraded);
        assert!(upgraded.is_tripped(), "its master runs: stopped as well");
        assert_eq!(marker(&journal), Some(true), "kept for the next daemon");
        fs::write(marker_path(&journal), "4294967295").unwrap();
        let restarted = FailStop::default();
        open_without_journal(&journal, &restarted);
        assert!(!restarted.is_tripped());
        assert_eq!(marker(&journal), None, "removed once said");
    }
}
