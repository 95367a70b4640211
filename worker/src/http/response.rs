//! Responses: whole bodies (owned, or lent in place by the store) serialised with their status
//! line, headers and `Content-Length`; the interim `100 Continue`; reason phrases.

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
