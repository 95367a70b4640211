//! HTTP/1.1 framing: the request head (through httparse, with the limits of `ops.md`), request
//! bodies by `Content-Length` or `chunked`, and response serialisation. No I/O here: the
//! connection feeds bytes in and takes bytes out, so every step is testable with split slices.

/// Longest request line (`414` past it): a 64 KiB key percent-encoded fits.
pub const MAX_REQUEST_LINE: usize = 262_144;
/// Longest header section after the request line (`431` past it).
pub const MAX_HEADER_SECTION: usize = 65_536;
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

/// A framing failure: the status it answers, and whether the connection must close after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingError {
    pub status: u16,
    pub close: bool,
}

impl FramingError {
    const fn closing(status: u16) -> FramingError {
        FramingError {
            status,
            close: true,
        }
    }
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

/// Incremental decoder of a `chunked` body.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    size_digits: u32,
    /// Bytes of the current line in the trailer section.
    line_len: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// After `;` on the size line: skip to the line end.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    Done,
}

/// Progress of [`ChunkedDecoder::feed`].
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkProgress {
    /// Consumed this many input bytes; more are needed.
    NeedMore(usize),
    /// The body ended after this many input bytes.
    Done(usize),
}

impl ChunkedDecoder {
    /// Decodes from `input` into `body`; fails with `413` when the body would pass `max`, or
    /// `400` on bad framing (both close the connection: the rest of the body is unread).
    pub fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max: u64,
    ) -> Result<ChunkProgress, FramingError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size_digits += 1;
                        if self.size_digits > 15 {
                            return Err(FramingError::closing(400));
                        }
                        self.size = self.size * 16 + digit;
                    }
                    b';' | b' ' | b'\t' if self.size_digits > 0 => {
                        self.state = ChunkState::Extension
                    }
                    b'\r' if self.size_digits > 0 => self.state = ChunkState::SizeLf,
                    b'\n' if self.size_digits > 0 => self.end_size_line(),
                    _ => return Err(FramingError::closing(400)),
                },
                ChunkState::Extension => match b {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => self.end_size_line(),
                    _ => {}
                },
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(FramingError::closing(400));
                    }
                    self.end_size_line();
                    if self.state == ChunkState::Data && body.len() as u64 + self.size > max {
                        return Err(FramingError::closing(413));
                    }
                }
                ChunkState::Data => {
                    let take = (self.size as usize).min(input.len() - i);
                    body.extend_from_slice(&input[i..i + take]);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err(FramingError::closing(400)),
                },
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(FramingError::closing(400));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => match b {
                    b'\r' => self.state = ChunkState::TrailerLf,
                    b'\n' => {
                        if self.end_trailer_line() {
                            return Ok(ChunkProgress::Done(i + 1));
                        }
                    }
                    _ => {
                        self.line_len += 1;
                        if self.line_len > MAX_HEADER_SECTION {
                            return Err(FramingError::closing(431));
                        }
                    }
                },
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Err(FramingError::closing(400));
                    }
                    if self.end_trailer_line() {
                        return Ok(ChunkProgress::Done(i + 1));
                    }
                }
                ChunkState::Done => return Ok(ChunkProgress::Done(i)),
            }
            i += 1;
        }
        if self.state == ChunkState::Done {
            return Ok(ChunkProgress::Done(i));
        }
        Ok(ChunkProgress::NeedMore(i))
    }

    fn end_size_line(&mut self) {
        self.size_digits = 0;
        self.state = if self.size == 0 {
            self.line_len = 0;
            ChunkState::Trailer
        } else {
            ChunkState::Data
        };
    }

    /// True when the line just ended was the empty line that closes the body.
    fn end_trailer_line(&mut self) -> bool {
        let last = self.line_len == 0;
        self.line_len = 0;
        self.state = if last {
            ChunkState::Done
        } else {
            ChunkState::Trailer
        };
        last
    }
}

/// A response. Bodies are whole byte vectors; every response carries `Content-Length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    /// The body instead of `body`: a value lent in place by the store for the rest of the
    /// pass (see `outq`).
    pub lent: Option<storage::InPlace>,
    /// Close the connection after this response whatever keep-alive says.
    pub close: bool,
}

pub const TEXT_PLAIN: &str = "text/plain";
pub const APPLICATION_JSON: &str = "application/json";

impl Response {
    /// A response with an empty body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: None,
            body: Vec::new(),
            lent: None,
            close: false,
        }
    }

    /// A `200` with a `text/plain` body.
    pub fn text(body: impl Into<Vec<u8>>) -> Response {
        Response::with_body(200, TEXT_PLAIN, body.into())
    }

    pub fn with_body(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: if body.is_empty() {
                None
            } else {
                Some(content_type)
            },
            body,
            lent: None,
            close: false,
        }
    }

    /// A `200` with a `text/plain` body lent in place by the store (see `outq`).
    pub fn text_lent(body: storage::InPlace) -> Response {
        let mut r = Response::with_body(200, TEXT_PLAIN, Vec::new());
        if !body.is_empty() {
            r.content_type = Some(TEXT_PLAIN);
            r.lent = Some(body);
        }
        r
    }

    pub fn header(mut self, name: &'static str, value: impl ToString) -> Response {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Appends the status line and headers (with `Content-Length`) to `out`.
    pub fn write_head(&self, out: &mut Vec<u8>, keep_alive: bool, minor: u8) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.{} {} {}\r\n",
            if minor == 0 { 0 } else { 1 },
            self.status,
            reason(self.status)
        );
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if let Some(ct) = self.content_type {
            let _ = write!(out, "Content-Type: {ct}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n", self.body_len());
        if !keep_alive || self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if minor == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Bytes of the body.
    pub fn body_len(&self) -> usize {
        self.lent.map_or(self.body.len(), |v| v.len())
    }

    /// Appends the whole serialised response to `out` (a response with an owned body).
    pub fn write_to(&self, out: &mut Vec<u8>, keep_alive: bool, minor: u8) {
        debug_assert!(self.lent.is_none(), "write_to copies owned bodies only");
        self.write_head(out, keep_alive, minor);
        out.extend_from_slice(&self.body);
    }
}

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
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

    #[test]
    fn chunked_body_decodes_across_splits() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 1..wire.len() {
            let mut dec = ChunkedDecoder::default();
            let mut body = Vec::new();
            let mut consumed = 0;
            let mut done = None;
            for part in [&wire[..split], &wire[split..]] {
                let mut off = 0;
                if done.is_some() {
                    break;
                }
                match dec.feed(&part[off..], &mut body, 1 << 20).unwrap() {
                    ChunkProgress::NeedMore(n) => off += n,
                    ChunkProgress::Done(n) => done = Some(consumed + n),
                }
                consumed += off;
            }
            assert_eq!(body, b"hello world", "split {split}");
            assert_eq!(done, Some(wire.len() - 4), "split {split}");
        }
    }

    #[test]
    fn chunked_body_over_the_limit_is_413() {
        let mut dec = ChunkedDecoder::default();
        let mut body = Vec::new();
        let err = dec.feed(b"10\r\n", &mut body, 8).unwrap_err();
        assert_eq!(err.status, 413);
    }

    #[test]
    fn bad_chunk_sizes_are_400() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"fffffffffffffffff\r\n",
            b"3\r\nabcX",
        ] {
            let mut dec = ChunkedDecoder::default();
            let err = dec.feed(bad, &mut Vec::new(), u64::MAX).unwrap_err();
            assert_eq!(err.status, 400, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn responses_always_carry_content_length() {
        let mut out = Vec::new();
        Response::empty(404).write_to(&mut out, true, 1);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        out.clear();
        Response::text("ok\n")
            .header("Version", 3)
            .write_to(&mut out, false, 1);
        assert_eq!(
            out,
            &b"HTTP/1.1 200 OK\r\nVersion: 3\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"[..]
        );
    }
}
