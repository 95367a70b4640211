//! Signal handling of the master: a self-pipe. The handlers only write the signal number as one
//! byte into a nonblocking pipe; the master loop polls the read end and turns the bytes into
//! flags that it handles in a fixed order (see `cycle.rs`). Nothing else runs in signal context.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::error::MasterError;

/// The signals the master handles.
pub const HANDLED: [Signal; 8] = [
    Signal::SIGCHLD,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Write end of the self-pipe, for the handler (which can only reach globals). -1: none.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let byte = sig as u8;
    // SAFETY: write(2) and errno access are async-signal-safe; `byte` outlives the call. errno
    // is saved and restored so the interrupted code does not see the handler's errno. A full
    // pipe (EAGAIN) only drops a byte while unread ones are pending, so nothing is lost.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        libc::write(fd, std::ptr::addr_of!(byte).cast(), 1);
        *errno = saved;
    }
}

/// The self-pipe; dropping it closes both ends.
pub struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// Which signals arrived since the last drain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    pub chld: bool,
    pub terminate: bool,
    pub quit: bool,
    pub reconfigure: bool,
    pub reopen: bool,
    pub upgrade: bool,
    pub winch: bool,
}

impl SignalPipe {
    /// Creates the pipe and installs the handlers. SIGPIPE stays ignored, as the Rust runtime
    /// set it.
    pub fn install() -> Result<SignalPipe, MasterError> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| MasterError::os("create the signal pipe", e))?;
        PIPE_WRITE.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            // SA_RESTART keeps the few blocking calls of the master (file writes) from failing
            // with EINTR; poll(2) is never restarted and wakes up, which is what we want.
            SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
            SigSet::empty(),
        );
        let mut set = SigSet::empty();
        for sig in HANDLED {
            // SAFETY: the handler only does async-signal-safe work (see `on_signal`).
            unsafe { signal::sigaction(sig, &action) }
                .map_err(|e| MasterError::os("install a signal handler", e))?;
            set.add(sig);
        }
        // The mask survives exec: a master started by a binary upgrade (or by a parent that
        // blocks signals) would otherwise never see them.
        signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)
            .map_err(|e| MasterError::os("unblock the signals", e))?;
        Ok(SignalPipe { read, write })
    }

    /// The read end, to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Reads every pending byte and returns the signals seen.
    pub fn drain(&self) -> Pending {
        let mut pending = Pending::default();
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(self.read.as_raw_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for &b in &buf[..n] {
                        match Signal::try_from(i32::from(b)) {
                            Ok(Signal::SIGCHLD) => pending.chld = true,
                            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => pending.terminate = true,
                            Ok(Signal::SIGQUIT) => pending.quit = true,
                            Ok(Signal::SIGHUP) => pending.reconfigure = true,
                            Ok(Signal::SIGUSR1) => pending.reopen = true,
                            Ok(Signal::SIGUSR2) => pending.upgrade = true,
                            Ok(Signal::SIGWINCH) => pending.winch = true,
                            _ => {}
                        }
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break, // EAGAIN: drained
            }
        }
        pending
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        // The handler must not write into a closed (and possibly reused) fd number.
        if PIPE_WRITE.load(Ordering::Relaxed) == self.write.as_raw_fd() {
            PIPE_WRITE.store(-1, Ordering::Relaxed);
        }
    }
}

/// Blocks the handled signals and returns the previous mask. The master does this around
/// `fork`, so that no signal runs the master's handler inside a child between the fork and the
/// child's reset (it would write into the master's pipe); signals sent to the child in that
/// window stay pending in it and are delivered once it unblocks them.
pub fn block() -> SigSet {
    let mut set = SigSet::empty();
    for sig in HANDLED {
        set.add(sig);
    }
    let mut old = SigSet::empty();
    // Cannot fail with a valid `how` and set.
    let _ = signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    old
}

/// Restores the mask returned by [`block`].
pub fn restore(old: &SigSet) {
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}

/// In a freshly forked child: every handled signal back to its default action, then the
/// signal mask `blocked` (empty for a worker, so that it starts as if exec'd and installs its
/// own handling; the cluster helper keeps its stop signals blocked, to `sigwait` them, with no
/// window where their default action could kill it). SIGPIPE stays ignored, as the Rust
/// runtime sets it for every Rust program (a worker writing to a closed socket must get EPIPE,
/// not die).
pub fn reset_in_child(blocked: &SigSet) {
    PIPE_WRITE.store(-1, Ordering::Relaxed);
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in HANDLED {
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { signal::sigaction(sig, &default) };
    }
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: as above, SIG_IGN runs no code.
    let _ = unsafe { signal::sigaction(Signal::SIGPIPE, &ignore) };
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(blocked), None);
}
