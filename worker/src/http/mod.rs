//! HTTP/1.1 framing: the request head (through httparse, with the limits of `ops.md`), request
//! bodies by `Content-Length` or `chunked`, and response serialisation. No I/O here: the
//! connection feeds bytes in and takes bytes out, so every step is testable with split slices.
//! This file holds what the parts share (the limits and [`FramingError`]); the head parser is in
//! `head`, the chunked decoder in `body`, and responses in `response`.

mod body;
mod head;
mod response;

pub use body::{ChunkProgress, ChunkedDecoder};
pub use head::{capture_access, parse_head, AccessHead, BodyFraming, Head, HeadParse, Method};
pub use response::{reason, Response, APPLICATION_JSON, CONTINUE, TEXT_PLAIN};

/// Longest request line (`414` past it): a 64 KiB key percent-encoded fits.
pub const MAX_REQUEST_LINE: usize = 262_144;
/// Longest header section after the request line (`431` past it).
pub const MAX_HEADER_SECTION: usize = 65_536;

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
