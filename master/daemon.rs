//! `daemon on;`: detach from the terminal with a double fork, and let the original process
//! exit 0 only once the daemon reports that it serves (pid file written), else 1 with the
//! daemon's error on stderr. The report travels through a pipe.

use std::io::Read;
use std::os::fd::OwnedFd;

use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{self, ForkResult};

use crate::error::MasterError;

/// The byte the daemon sends when it is up; anything else is an error message.
const READY: u8 = 0;

/// The daemon's end of the report pipe. Dropping it without [`Reporter::ready`] makes the
/// original process exit 1.
pub struct Reporter {
    pipe: OwnedFd,
}

impl Reporter {
    /// Tells the original process that the daemon serves; it exits 0.
    pub fn ready(self) {
        let _ = unistd::write(&self.pipe, &[READY]);
    }

    /// Tells the original process why the daemon could not start; it prints the line and exits 1.
    pub fn fail(self, message: &str) {
        let _ = unistd::write(&self.pipe, message.as_bytes());
    }
}

/// Detaches: fork (the original process waits for the report and exits), setsid, fork again (so
/// the daemon is not a session leader and can never reacquire a terminal), chdir /, stdio to
/// /dev/null. Returns in the daemon only.
pub fn daemonize() -> Result<Reporter, MasterError> {
    let (read, write) = unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| MasterError::os("create the daemon pipe", e))?;
    // SAFETY: the master has no other thread yet, so the child may run any code.
    match unsafe { unistd::fork() }.map_err(|e| MasterError::os("fork the daemon", e))? {
        ForkResult::Parent { child } => {
            drop(write);
            // The intermediate child exits at once; reap it so it does not linger as a zombie.
            let _ = waitpid(child, None);
            std::process::exit(wait_for_report(read));
        }
        ForkResult::Child => {}
    }
    drop(read);
    let reporter = Reporter { pipe: write };
    if let Err(e) = unistd::setsid() {
        reporter.fail(&MasterError::os("setsid", e).to_string());
        std::process::exit(1);
    }
    // SAFETY: still single-threaded.
    match unsafe { unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            reporter.fail(&MasterError::os("fork the daemon", e).to_string());
            std::process::exit(1);
        }
    }
    // Conf paths are absolute, so leaving the start folder changes nothing but lets it be
    // unmounted.
    unistd::chdir("/").map_err(|e| MasterError::os("chdir to /", e))?;
    let null = fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty())
        .map_err(|e| MasterError::os("open /dev/null", e))?;
    for fd in 0..=2 {
        unistd::dup2(null, fd).map_err(|e| MasterError::os("redirect stdio to /dev/null", e))?;
    }
    if null > 2 {
        let _ = unistd::close(null);
    }
    Ok(reporter)
}

/// In the original process: reads the daemon's report and returns the exit code.
fn wait_for_report(read: OwnedFd) -> i32 {
    let mut file = std::fs::File::from(read);
    let mut report = Vec::new();
    let _ = file.read_to_end(&mut report);
    match report.as_slice() {
        [READY] => 0,
        [] => {
            eprintln!("huststore: the daemon exited before it was ready, see the error log");
            1
        }
        message => {
            eprintln!("huststore: {}", String::from_utf8_lossy(message).trim_end());
            1
        }
    }
}
