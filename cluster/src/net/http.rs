//! The little HTTP/1.1 the peer protocol needs: one request or response read off a keep-alive
//! stream (a head parsed by `httparse`, then a body of exactly its `Content-Length`, refused
//! past a size cap before it is read), and the bytes of one request or response written back.
//! No chunked bodies, no `Expect`, no upgrades: peers are our own code, and anything else is
//! refused as malformed rather than half understood.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest head (request line or status line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most headers a head may have.
const MAX_HEADERS: usize = 32;

/// Why no message could be read.
#[derive(Debug)]
pub enum HttpError {
    /// The stream ended cleanly between two messages (a keep-alive connection closed).
    Closed,
    /// The stream failed, or ended inside a message.
    Io(io::Error),
    /// Bytes that are not a message we accept (the reason, for the log line).
    Malformed(&'static str),
    /// A body over the cap (its announced length).
    TooLarge(u64),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Closed => write!(f, "connection closed"),
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Malformed(why) => write!(f, "malformed HTTP message: {why}"),
            HttpError::TooLarge(len) => write!(f, "body of {len} bytes is over the cap"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A request as the server needs it: what it is signed over and its headers' raw values.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    /// Name and raw value of each header, as `PeerKey::verify` takes them.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}

/// The body's length from the headers: `Content-Length` alone (0 when absent).
fn content_length(headers: &[httparse::Header<'_>]) -> Result<u64, HttpError> {
    let mut len = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed("Transfer-Encoding is not accepted"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(HttpError::Malformed("bad Content-Length"))?;
            if len.replace(v).is_some_and(|old| old != v) {
                return Err(HttpError::Malformed("two Content-Length headers"));
            }
        }
    }
    Ok(len.unwrap_or(0))
}

/// The length of a head `httparse` parsed whole; `None` while it is incomplete.
fn head_len(
    parsed: httparse::Result<usize>,
    what: &'static str,
) -> Result<Option<usize>, HttpError> {
    match parsed {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Err(_) => Err(HttpError::Malformed(what)),
    }
}

/// What a head parser found: the head's length, what it keeps of it, the body's length.
type Head<T> = (usize, T, u64);

/// Reads one message off `stream`: `parse` is tried on what `buf` holds until it finds a whole
/// head, then the body is read. Bytes after the message stay in `buf` for the next one.
async fn read_message<S, T>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max_body: u64,
    parse: impl Fn(&[u8]) -> Result<Option<Head<T>>, HttpError>,
) -> Result<(T, Vec<u8>), HttpError>
where
    S: AsyncRead + Unpin,
{
    let (head_len, kept, body_len) = loop {
        if let Some(head) = parse(buf)? {
            break head;
        }
        if buf.len() >= MAX_HEAD {
            return Err(HttpError::Malformed("head too long"));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.map_err(HttpError::Io)?;
        if n == 0 {
            return Err(match buf.is_empty() {
                true => HttpError::Closed,
                false => HttpError::Io(io::ErrorKind::UnexpectedEof.into()),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if body_len > max_body {
        return Err(HttpError::TooLarge(body_len));
    }
    // body_len <= max_body, which fits in memory by the caller's choice.
    let end = head_len + body_len as usize;
    while buf.len() < end {
        let mut chunk = vec![0u8; (end - buf.len()).min(1 << 20)];
        let n = stream.read(&mut chunk).await.map_err(HttpError::Io)?;
        if n == 0 {
            return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_len..end].to_vec();
    buf.drain(..end);
    Ok((kept, body))
}

/// Reads one request (a body of at most `max_body` bytes).
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max_body: u64,
) -> Result<Request, HttpError> {
    let parse = |bytes: &[u8]| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let Some(len) = head_len(req.parse(bytes), "bad request head")? else {
            return Ok(None);
        };
        let kept = Request {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            headers: (req.headers.iter())
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect(),
            body: Vec::new(),
        };
        Ok(Some((len, kept, content_length(req.headers)?)))
    };
    let (mut req, body) = read_message(stream, buf, max_body, parse).await?;
    req.body = body;
    Ok(req)
}

/// Reads one response: its status and body.
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max_body: u64,
) -> Result<(u16, Vec<u8>), HttpError> {
    let parse = |bytes: &[u8]| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let Some(len) = head_len(resp.parse(bytes), "bad response head")? else {
            return Ok(None);
        };
        let status = resp.code.unwrap_or(0);
        Ok(Some((len, status, content_length(resp.headers)?)))
    };
    read_message(stream, buf, max_body, parse).await
}

/// The bytes of a `POST` of `body` to `target` with `headers`.
pub fn request_bytes(target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {target} HTTP/1.1\r\nHost: peer\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// The bytes of a response with `status` and `body`; `close` says the server closes after it.
pub fn response_bytes(status: u16, body: &[u8], close: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Error",
    };
    let connection = if close { "close" } else { "keep-alive" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(f)
    }

    #[test]
    fn requests_on_one_stream_are_read_one_after_another() {
        let mut bytes = request_bytes("/raft", &[("Hust-Node", "n1")], b"abc");
        bytes.extend_from_slice(&request_bytes("/raft", &[], b""));
        let mut stream = &bytes[..];
        let mut buf = Vec::new();
        let req = run(read_request(&mut stream, &mut buf, 10)).expect("first");
        assert_eq!(
            (req.method.as_str(), req.target.as_str()),
            ("POST", "/raft")
        );
        assert_eq!(req.body, b"abc");
        let node = req.header_pairs().find(|(n, _)| *n == "Hust-Node");
        assert_eq!(node, Some(("Hust-Node", &b"n1"[..])));
        assert!(run(read_request(&mut stream, &mut buf, 10))
            .expect("second")
            .body
            .is_empty());
        assert!(matches!(
            run(read_request(&mut stream, &mut buf, 10)),
            Err(HttpError::Closed)
        ));
    }

    #[test]
    fn responses_round_trip() {
        let bytes = response_bytes(401, b"unauthorized", false);
        let (status, body) = run(read_response(&mut &bytes[..], &mut Vec::new(), 100)).expect("ok");
        assert_eq!((status, body.as_slice()), (401, &b"unauthorized"[..]));
    }

    #[test]
    fn what_we_do_not_accept_is_refused() {
        let read =
            |bytes: &[u8], max: u64| run(read_request(&mut &bytes[..], &mut Vec::new(), max));
        let big = request_bytes("/raft", &[], &[0; 11]);
        assert!(matches!(read(&big, 10), Err(HttpError::TooLarge(11))));
        let chunked = b"POST /raft HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(read(chunked, 10), Err(HttpError::Malformed(_))));
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert!(matches!(read(two, 10), Err(HttpError::Malformed(_))));
        let cut = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(read(cut, 10), Err(HttpError::Io(_))));
        let endless = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(read(&endless, 10), Err(HttpError::Malformed(_))));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let good = request_bytes("/raft", &[("A", "b")], b"body");
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bad = good.clone();
            let at = (x % bad.len() as u64) as usize;
            bad[at] = (x >> 32) as u8;
            bad.truncate(((x >> 40) % (good.len() as u64 + 1)) as usize);
            let _ = run(read_request(&mut &bad[..], &mut Vec::new(), 100));
            let _ = run(read_response(&mut &bad[..], &mut Vec::new(), 100));
        }
    }
}
