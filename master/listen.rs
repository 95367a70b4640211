//! The listening sockets, bound once by the master.
//!
//! Design: ONE listening socket per `listen` address, created here and inherited by every worker
//! across `fork`, rather than one `SO_REUSEPORT` socket per worker slot. The reason is the
//! accept queue: with `SO_REUSEPORT` the kernel assigns each incoming connection to one
//! particular socket, and when the process owning that socket goes away (a worker killed with
//! -9, a worker retired by a reload, a slot dropped because `worker_processes` shrank) every
//! connection waiting in that socket's backlog is reset. With one shared socket the master
//! keeps a reference open for the whole life of the daemon, so closing a worker never closes
//! the socket and never drops its backlog; whichever worker polls the socket next accepts the
//! waiting connections (the kernel hands each connection to one of the workers polling it).
//! `SO_REUSEPORT` is deliberately NOT set, so a second daemon on the same port fails to bind
//! instead of silently sharing the port.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};

use crate::error::MasterError;

/// The accept queue length asked of the kernel (nginx's default; the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: i32 = 511;

/// One bound socket in the master's table.
#[derive(Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    pub socket: TcpListener,
}

/// Binds and listens on `addr`: `SO_REUSEADDR` (so a restart does not wait for TIME_WAIT),
/// `IPV6_V6ONLY` on IPv6 (so `[::]:P` and `0.0.0.0:P` can both be listed), close-on-exec,
/// blocking (each worker makes its inherited copy nonblocking itself).
pub fn bind(addr: SocketAddr) -> Result<Listener, MasterError> {
    let fail = |err: nix::Error| MasterError::Bind {
        addr,
        err: std::io::Error::from(err),
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd =
        socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(fail)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(fail)?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(fail)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(fail)?;
    let backlog = Backlog::new(BACKLOG).map_err(fail)?;
    socket::listen(&fd, backlog).map_err(fail)?;
    Ok(Listener {
        addr,
        socket: TcpListener::from(fd),
    })
}

/// How often, and how far apart, [`bind_retrying`] tries an address that is in use (nginx's
/// five tries half a second apart).
const BIND_TRIES: u32 = 5;
const BIND_RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// [`bind`], tried again while the address is in use, as nginx does: right after a `kill -9` of
/// a daemon, its sockets can stay bound until the killed processes' last threads are gone.
/// Only the master's start uses it (the master has no workers yet, so nothing waits on it).
pub fn bind_retrying(addr: SocketAddr) -> Result<Listener, MasterError> {
    let mut tries = 1;
    loop {
        match bind(addr) {
            Err(MasterError::Bind { err, .. })
                if err.kind() == std::io::ErrorKind::AddrInUse && tries < BIND_TRIES =>
            {
                log::warn!("could not bind {addr}: {err}; trying again in 500 ms");
                tries += 1;
                std::thread::sleep(BIND_RETRY_EVERY);
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_v4_and_refuses_a_taken_port() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.socket.local_addr().unwrap();
        let err = bind(addr).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("could not bind {addr}: ")),
            "{err}"
        );
        assert!(err.contains("in use"), "{err}");
    }

    #[test]
    fn a_bind_is_retried_while_the_address_is_in_use() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.socket.local_addr().unwrap();
        let freed = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(700));
            drop(first);
        });
        let started = std::time::Instant::now();
        let second = bind_retrying(addr).expect("bound once the first socket is closed");
        assert_eq!(second.socket.local_addr().unwrap(), addr);
        assert!(started.elapsed() >= std::time::Duration::from_millis(500));
        freed.join().unwrap();
        // Held for good: refused after the last try, about 2 s later.
        let started = std::time::Instant::now();
        let err = bind_retrying(addr).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        assert!(started.elapsed() >= BIND_RETRY_EVERY * (BIND_TRIES - 1));
    }

    #[test]
    fn binds_v6_only() {
        // Loopback IPv6 may be missing in some containers; only check when it is there.
        if let Ok(l) = bind("[::1]:0".parse().unwrap()) {
            assert!(l.socket.local_addr().unwrap().is_ipv6());
        }
    }
}
