//! The request head: finding its end in the buffered bytes (with the request-line and
//! header-section limits), parsing it through httparse, and reading the headers framing and
//! routing need (length or chunked, keep-alive, `Expect`, `Authorization`, access-log fields).

use super::{FramingError, MAX_HEADER_SECTION, MAX_REQUEST_LINE};

/// Most header lines one request may carry (`431` past it).
const MAX_HEADERS: usize = 128;

/// Request methods the route table knows; anything else is `Other` (always `405`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Other,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head. The path and query are kept raw: the path is matched byte for byte
/// and the query is decoded by the handler stage, after auth, routing and the method check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub path: Vec<u8>,
    pub query: Vec<u8>,
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub authorization: Option<Vec<u8>>,
    /// `Hust-Forwarded` was present: another node of the cluster forwarded the request, so it
    /// is answered here or refused, never forwarded again (`cluster::fetch`).
    pub forwarded: bool,
    pub framing: BodyFraming,
    /// What the access log needs, captured only while one is configured.
    pub access: Option<Box<AccessHead>>,
}

/// The parts of a head the access log prints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessHead {
    pub request_line: Vec<u8>,
    pub referer: Vec<u8>,
    pub user_agent: Vec<u8>,
}

/// Whether heads capture [`AccessHead`]; set once at worker start when `access_log` is on.
static CAPTURE_ACCESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns capturing of access-log fields on or off for this process.
pub fn capture_access(on: bool) {
    CAPTURE_ACCESS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// What [`parse_head`] found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadParse {
    /// The head is not complete yet; `scanned` bytes can be skipped by the next search.
    Partial { scanned: usize },
    /// A complete head of `len` bytes.
    Complete { head: Head, len: usize },
}

/// Finds and parses one request head at the start of `buf`. `scanned` is where the previous
/// search for the end of the head stopped, so a head trickled byte by byte costs linear time.
pub fn parse_head(buf: &[u8], scanned: usize) -> Result<HeadParse, FramingError> {
    // Leading empty lines between pipelined requests are allowed (RFC 9112 §2.2).
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let line_end = memchr(b'\n', &buf[lead..]).map(|i| lead + i);
    let line_len = line_end.unwrap_or(buf.len()) - lead;
    if line_len > MAX_REQUEST_LINE + 1 {
        return Err(FramingError::closing(414));
    }
    let Some(line_end) = line_end else {
        return Ok(HeadParse::Partial { scanned: 0 });
    };
    let Some(end) = find_head_end(buf, line_end.max(scanned.saturating_sub(3))) else {
        if buf.len() - line_end > MAX_HEADER_SECTION {
            return Err(FramingError::closing(431));
        }
        return Ok(HeadParse::Partial { scanned: buf.len() });
    };
    if end - line_end > MAX_HEADER_SECTION + 2 {
        return Err(FramingError::closing(431));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(FramingError::closing(400)),
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::closing(431)),
        Err(_) => return Err(FramingError::closing(400)),
    };
    let mut head = interpret(&req)?;
    if CAPTURE_ACCESS.load(std::sync::atomic::Ordering::Relaxed) {
        let line = &buf[lead..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let find = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map_or_else(Vec::new, |h| h.value.to_vec())
        };
        head.access = Some(Box::new(AccessHead {
            request_line: line.to_vec(),
            referer: find("referer"),
            user_agent: find("user-agent"),
        }));
    }
    Ok(HeadParse::Complete { head, len })
}

/// Index just past the blank line that ends the head (`\r\n\r\n` or a bare `\n\n`).
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(nl) = memchr(b'\n', &buf[i..]) {
        let at = i + nl;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at + 2),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => return Some(at + 3),
            _ => {}
        }
        i = at + 1;
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn interpret(req: &httparse::Request<'_, '_>) -> Result<Head, FramingError> {
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("").as_bytes();
    let (path, query) = match memchr(b'?', target) {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    let minor = req.version.unwrap_or(1);
    let mut head = Head {
        method,
        path: path.to_vec(),
        query: query.to_vec(),
        minor,
        keep_alive: minor >= 1,
        expect_continue: false,
        authorization: None,
        forwarded: false,
        framing: BodyFraming::None,
        access: None,
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value).ok_or(FramingError::closing(400))?;
            if length.is_some_and(|old| old != n) {
                return Err(FramingError::closing(400));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let value = trim(h.value);
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(FramingError::closing(501));
            }
            if chunked {
                // "chunked, chunked" twice is not a valid coding sequence.
                return Err(FramingError::closing(400));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = trim(h.value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("authorization") && head.authorization.is_none() {
            head.authorization = Some(h.value.to_vec());
        } else if name.eq_ignore_ascii_case(cluster::fetch::FORWARDED) {
            head.forwarded = true;
        }
    }
    head.framing = match (chunked, length) {
        (true, Some(_)) => return Err(FramingError::closing(400)),
        (true, None) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    if head.minor == 0 && head.framing == BodyFraming::Chunked {
        // HTTP/1.0 has no chunked coding.
        return Err(FramingError::closing(400));
    }
    Ok(head)
}

fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Head, usize) {
        match parse_head(buf, 0) {
            Ok(HeadParse::Complete { head, len }) => (head, len),
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn parses_a_simple_get() {
        let (head, len) = complete(b"GET /get?key=a HTTP/1.1\r\nHost: x\r\n\r\nrest");
        assert_eq!(len, 36);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, b"/get");
        assert_eq!(head.query, b"key=a");
        assert!(head.keep_alive);
        assert_eq!(head.framing, BodyFraming::None);
    }

    #[test]
    fn head_split_at_every_byte_is_partial_until_complete() {
        let req = b"POST /put?key=a HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
        let mut scanned = 0;
        for cut in 1..req.len() {
            match parse_head(&req[..cut], scanned).unwrap() {
                HeadParse::Partial { scanned: s } => scanned = s,
                other => panic!("complete too early at {cut}: {other:?}"),
            }
        }
        let HeadParse::Complete { head, .. } = parse_head(req, scanned).unwrap() else {
            panic!("not complete");
        };
        assert_eq!(head.framing, BodyFraming::Length(3));
    }

    #[test]
    fn http10_defaults_to_close_unless_keep_alive() {
        let (head, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!head.keep_alive);
        let (head, _) = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(head.keep_alive);
        let (head, _) = complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!head.keep_alive);
    }

    #[test]
    fn limits_give_414_and_431() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_REQUEST_LINE + 10));
        assert_eq!(parse_head(&long, 0).unwrap_err().status, 414);
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..3000 {
            big.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(20)).as_bytes());
        }
        assert_eq!(parse_head(&big, 0).unwrap_err().status, 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many, 0).unwrap_err().status, 431);
    }

    #[test]
    fn a_request_line_at_the_limit_is_accepted() {
        let mut req = b"GET /".to_vec();
        let line_len = MAX_REQUEST_LINE;
        let filler = line_len - "GET /".len() - " HTTP/1.1".len();
        req.extend(std::iter::repeat_n(b'a', filler));
        req.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        complete(&req);
    }

    #[test]
    fn malformed_heads_are_400() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let err = parse_head(bad, 0).unwrap_err();
            assert_eq!(err.status, 400, "{:?}", String::from_utf8_lossy(bad));
            assert!(err.close);
        }
    }

    #[test]
    fn unknown_transfer_coding_is_501() {
        let err = parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 0).unwrap_err();
        assert_eq!(err, FramingError::closing(501));
    }
}
