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
    fn binds_v6_only() {
        // Loopback IPv6 may be missing in some containers; only check when it is there.
        if let Ok(l) = bind("[::1]:0".parse().unwrap()) {
            assert!(l.socket.local_addr().unwrap().is_ipv6());
        }
    }
}
