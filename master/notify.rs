//! systemd's readiness protocol (`Type=notify`, see sd_notify(3)), written by hand: one datagram
//! of `NAME=value` lines sent to the unix socket named by `$NOTIFY_SOCKET`, a file path or,
//! when it starts with `@`, a name in the abstract namespace. The master sends
//!
//! - `READY=1` with `MAINPID=` once its workers serve (when the pid file is written), and again
//!   when a reload has settled; `MAINPID=` is what lets a binary upgrade work under systemd,
//!   since the new master announces itself as the service's main process;
//! - `RELOADING=1` when a HUP starts a reload;
//! - `STOPPING=1` when QUIT or TERM starts a stop.
//!
//! Only the master talks to systemd: [`Notifier::from_env`] removes the variable from the
//! environment, so that no worker (forked) and no other program sees it, and the new master of
//! a binary upgrade gets it explicitly ([`Notifier::env`]). Without the variable every call
//! does nothing. A send that fails is logged and otherwise ignored: systemd's supervision is a
//! convenience, never a reason to stop serving.

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// The environment variable systemd sets for a `Type=notify` service.
pub const ENV: &str = "NOTIFY_SOCKET";

/// Where the notifications go; `None` when the master was not started by systemd (or by
/// anything else that speaks the protocol).
#[derive(Debug, Default)]
pub struct Notifier {
    /// The variable's value as found, handed on to the new master of a binary upgrade.
    target: Option<OsString>,
}

impl Notifier {
    /// Takes `$NOTIFY_SOCKET` out of the environment. Call it while the process is
    /// single-threaded (at the start of `main`), since changing the environment is not
    /// thread-safe.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os(ENV).filter(|v| !v.is_empty());
        if target.is_some() {
            std::env::remove_var(ENV);
        }
        Notifier { target }
    }

    /// The variable to set for the new master of a binary upgrade, so that it can announce
    /// itself as the main process.
    pub fn env(&self) -> Option<(&'static str, &OsString)> {
        self.target.as_ref().map(|t| (ENV, t))
    }

    /// `READY=1`: the service serves. With `claim_main`, also `MAINPID=<this process>`: this
    /// master is the one to supervise. `status` becomes the unit's status line (`systemctl
    /// status`).
    pub fn ready(&self, status: &str, claim_main: bool) {
        let mut msg = String::from("READY=1\n");
        if claim_main {
            msg.push_str(&format!("MAINPID={}\n", std::process::id()));
        }
        msg.push_str(&format!("STATUS={}\n", one_line(status)));
        self.send(&msg);
    }

    /// `RELOADING=1`: a reload has started; a [`Notifier::ready`] follows once it has settled.
    /// `MONOTONIC_USEC` is what systemd ≥ 253 wants with it (older ones ignore it).
    pub fn reloading(&self, status: &str) {
        let mut msg = String::from("RELOADING=1\n");
        if let Some(usec) = monotonic_usec() {
            msg.push_str(&format!("MONOTONIC_USEC={usec}\n"));
        }
        msg.push_str(&format!("STATUS={}\n", one_line(status)));
        self.send(&msg);
    }

    /// `STOPPING=1`: the service is stopping (QUIT or TERM).
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}\n", one_line(status)));
    }

    fn send(&self, msg: &str) {
        let Some(target) = &self.target else { return };
        if let Err(e) = send_to(target, msg.as_bytes()) {
            log::warn!(
                "could not notify systemd through {}={}: {e}",
                ENV,
                target.to_string_lossy()
            );
        }
    }
}

/// Sends one datagram to the socket named by a `$NOTIFY_SOCKET` value. A fresh unbound socket
/// each time: notifications are rare, and no descriptor is left for a forked worker to inherit
/// (std opens it close-on-exec, and it is closed before this returns).
fn send_to(target: &OsString, msg: &[u8]) -> std::io::Result<()> {
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        // Linux's abstract namespace: the name is the rest, without a trailing NUL.
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(Path::new(target))?,
    };
    let socket = UnixDatagram::unbound()?;
    let sent = socket.send_to_addr(msg, &addr)?;
    if sent != msg.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", msg.len()),
        ));
    }
    Ok(())
}

/// A status text on one line (a newline would start another assignment).
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which lives on this stack
    // frame for the whole call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs * 1_000_000 + nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn notifier(target: &str) -> Notifier {
        Notifier {
            target: Some(OsString::from(target)),
        }
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn path_socket() {
        let dir = std::env::temp_dir().join(format!("huststore-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = notifier(path.to_str().unwrap());
        n.ready("serving\non two lines", true);
        let msg = recv(&socket);
        assert!(msg.starts_with("READY=1\n"), "{msg:?}");
        assert!(
            msg.contains(&format!("MAINPID={}\n", std::process::id())),
            "{msg:?}"
        );
        assert!(msg.contains("STATUS=serving on two lines\n"), "{msg:?}");
        n.reloading("reloading");
        let msg = recv(&socket);
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg:?}");
        n.stopping("bye");
        assert_eq!(recv(&socket), "STOPPING=1\nSTATUS=bye\n");
        n.ready("again", false);
        assert_eq!(recv(&socket), "READY=1\nSTATUS=again\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_socket() {
        let name = format!("huststore-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        notifier(&format!("@{name}")).stopping("x");
        assert_eq!(recv(&socket), "STOPPING=1\nSTATUS=x\n");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let n = Notifier::default();
        assert!(n.env().is_none());
        n.ready("nothing", true);
    }

    #[test]
    fn a_missing_socket_is_not_fatal() {
        notifier("/nonexistent/huststore/notify.sock").ready("x", false);
    }
}
