//! A keep-alive connection for tests that kill the server under their clients: it reports
//! I/O errors instead of panicking, and [`is_gone`] tells a killed server (the request may or
//! may not have been applied: it is in flight) from a stalled one (a failure).

use super::{read_response, Response};
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One keep-alive connection; `timeout` bounds the connect and every read and write.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s),
        })
    }

    /// Sends one request (with `Content-Length`, even for an empty body) and reads its
    /// response; EOF before it is an `UnexpectedEof` error.
    pub fn send(&mut self, method: &str, target: &str, body: &[u8]) -> io::Result<Response> {
        let mut wire = format!(
            "{method} {target} HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        wire.extend_from_slice(body);
        self.reader.get_mut().write_all(&wire)?;
        read_response(&mut self.reader, method == "HEAD")?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))
    }
}

/// Whether an I/O error means "the server side went away" (a killed process), as opposed to
/// a stall (timeout).
pub fn is_gone(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
