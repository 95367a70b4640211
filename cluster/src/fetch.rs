//! The helper's small HTTP/1.1 client towards the other nodes' client addresses (`cluster.md`
//! §4, §5): a read that this node cannot answer (it does not replicate the key's group), the
//! replicas' answers of `/get2` and the per-group parts of the cluster's totals are GETs to a
//! member's client address, made here on behalf of a worker ([`crate::local::Message::Fetch`]).
//! Every request carries `Hust-Forwarded: 1`, so that the node asked answers it itself and
//! never forwards it again.
//!
//! Bounded everywhere: one request and its answer take at most the timeout, a response head at
//! most [`MAX_HEAD`] bytes, a body at most [`MAX_BODY`]; a response that is no HTTP, or is cut,
//! is an error (never a panic), and its connection is dropped. Connections are kept alive and
//! reused, a few per node ([`IDLE_PER_NODE`]); a reused one that turns out closed is retried
//! once on a fresh connection (a GET changes nothing).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header that marks a request forwarded by a node.
pub const FORWARDED: &str = "Hust-Forwarded";
/// The largest response head read.
pub const MAX_HEAD: usize = 64 << 10;
/// The largest response body read (a value of a read travels in one local frame).
pub const MAX_BODY: usize = 256 << 20;
/// Idle connections kept per node.
const IDLE_PER_NODE: usize = 4;
/// Headers of a response kept.
const MAX_HEADERS: usize = 64;

/// An HTTP response as the worker relays it: status, headers (without the framing ones:
/// `Content-Length`, `Connection`, `Keep-Alive`, `Transfer-Encoding`), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The client: the nodes' client addresses, by node index, and the idle connections.
pub struct Fetcher {
    nodes: Vec<SocketAddr>,
    timeout: Duration,
    idle: Mutex<HashMap<u32, Vec<TcpStream>>>,
}

impl Fetcher {
    /// A client of the nodes at `nodes` (their client addresses, in the conf's order); each
    /// request and its answer may take up to `timeout`.
    pub fn new(nodes: Vec<SocketAddr>, timeout: Duration) -> Fetcher {
        Fetcher {
            nodes,
            timeout,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// GETs `target` (`path?query`) from node `node`, with the client's `authorization`
    /// (empty for none). `Err` says why no answer came (unknown node, connect, timeout, a
    /// response that is no HTTP).
    pub async fn get(
        &self,
        node: u32,
        target: &[u8],
        authorization: &[u8],
    ) -> Result<Response, String> {
        let addr = *self
            .nodes
            .get(node as usize)
            .ok_or_else(|| format!("no node {node}"))?;
        if target.first() != Some(&b'/') || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err("not a request target".into());
        }
        if authorization.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err("not a header value".into());
        }
        let request = request_bytes(addr, target, authorization);
        let work = async {
            if let Some(stream) = self.take_idle(node) {
                // A kept connection the node has closed meanwhile fails at once: retried below.
                if let Ok(r) = exchange(stream, &request).await {
                    return Ok(r);
                }
            }
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            let _ = stream.set_nodelay(true);
            exchange(stream, &request).await
        };
        let (response, stream) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("no answer from {addr} within {:?}", self.timeout))??;
        if let Some(s) = stream {
            self.put_idle(node, s);
        }
        Ok(response)
    }

    fn take_idle(&self, node: u32) -> Option<TcpStream> {
        self.idle.lock().ok()?.get_mut(&node)?.pop()
    }

    fn put_idle(&self, node: u32, stream: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(node).or_default();
            if list.len() < IDLE_PER_NODE {
                list.push(stream);
            }
        }
    }
}

fn request_bytes(addr: SocketAddr, target: &[u8], authorization: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(target.len() + 128);
    r.extend_from_slice(b"GET ");
    r.extend_from_slice(target);
    r.extend_from_slice(format!(" HTTP/1.1\r\nHost: {addr}\r\n{FORWARDED}: 1\r\n").as_bytes());
    if !authorization.is_empty() {
        r.extend_from_slice(b"Authorization: ");
        r.extend_from_slice(authorization);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// Sends `request` and reads its response; the stream back when it may be reused.
async fn exchange(
    mut stream: TcpStream,
    request: &[u8],
) -> Result<(Response, Option<TcpStream>), String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 << 10];
    let (head, head_len) = loop {
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err("response head too large".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut body = buf.split_off(head_len);
    let keep = match head.length {
        Some(len) => {
            if len > MAX_BODY {
                return Err("response body too large".into());
            }
            body.reserve(len.saturating_sub(body.len()));
            while body.len() < len {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("reading: {e}"))?;
                if n == 0 {
                    return Err("response body cut short".into());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            if body.len() > len {
                // Bytes beyond the response: the stream is out of step.
                return Err("bytes after the response".into());
            }
            head.keep_alive
        }
        None => {
            // Delimited by the close.
            loop {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("reading: {e}"))?;
                if n == 0 {
                    break;
                }
                if body.len() + n > MAX_BODY {
                    return Err("response body too large".into());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            false
        }
    };
    let response = Response {
        status: head.status,
        headers: head.headers,
        body,
    };
    Ok((response, keep.then_some(stream)))
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    length: Option<usize>,
    keep_alive: bool,
}

/// The response head at the start of `buf` and its length; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut raw);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP response: {e}")),
    };
    let status = r.code.ok_or("no status")?;
    let mut head = Head {
        status,
        headers: Vec::new(),
        length: None,
        keep_alive: r.version == Some(1),
    };
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| format!("header {} is not UTF-8", h.name))?
            .trim()
            .to_string();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| "bad Content-Length")?;
            if head.length.is_some_and(|l| l != n) {
                return Err("two Content-Lengths".into());
            }
            head.length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Our nodes never send chunked replies; anything else is refused.
            return Err("chunked responses are not read".into());
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                head.keep_alive = false;
            }
        } else if !name.eq_ignore_ascii_case("keep-alive") {
            head.headers.push((name.to_string(), value));
        }
    }
    // 1xx, 204 and 304 have no body.
    if status < 200 || status == 204 || status == 304 {
        head.length = Some(0);
    }
    Ok(Some((head, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_garbage_is_an_error() {
        let ok = b"HTTP/1.1 200 OK\r\nVersion: 3\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nv1";
        let (head, len) = parse_head(ok).unwrap().unwrap();
        assert_eq!(
            (head.status, head.length, head.keep_alive),
            (200, Some(2), true)
        );
        assert_eq!(head.headers, vec![("Version".to_string(), "3".to_string())]);
        assert_eq!(&ok[len..], b"v1");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nVer").unwrap().is_none());
        for bad in [
            &b"\xff\xfe garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{bad:?}");
        }
        let close = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n";
        let (head, _) = parse_head(close).unwrap().unwrap();
        assert!(!head.keep_alive);
        assert_eq!(head.length, None);
    }

    #[test]
    fn requests_are_marked_forwarded() {
        let addr: SocketAddr = "127.0.0.1:8082".parse().unwrap();
        let r = request_bytes(addr, b"/get?key=a", b"Basic x");
        assert_eq!(
            r,
            b"GET /get?key=a HTTP/1.1\r\nHost: 127.0.0.1:8082\r\nHust-Forwarded: 1\r\nAuthorization: Basic x\r\n\r\n"
        );
    }
}
