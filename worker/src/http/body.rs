//! The `chunked` request body: an incremental decoder fed whatever bytes have arrived, with the
//! body-size limit and the trailer section's line limit.

use super::{FramingError, MAX_HEADER_SECTION};

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
                    b'\n' if self.size_digits > 0 => self.end_size_line(body, max)?,
                    _ => return Err(FramingError::closing(400)),
                },
                ChunkState::Extension => match b {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => self.end_size_line(body, max)?,
                    _ => {}
                },
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(FramingError::closing(400));
                    }
                    self.end_size_line(body, max)?;
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

    /// The size line ended (`\r\n` or a bare `\n`): the chunk's data follows, or the trailer
    /// after the last chunk. A chunk that would take the body past `max` is refused here,
    /// before any of its data is taken, whichever line end the size line had.
    fn end_size_line(&mut self, body: &[u8], max: u64) -> Result<(), FramingError> {
        self.size_digits = 0;
        if self.size == 0 {
            self.line_len = 0;
            self.state = ChunkState::Trailer;
            return Ok(());
        }
        if body.len() as u64 + self.size > max {
            return Err(FramingError::closing(413));
        }
        self.state = ChunkState::Data;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Found by the fuzzer (fuzz/corpus/chunked/): a size line ended by a bare `\n` (or an
    /// extension then `\n`) skipped the limit, so the body grew past `max`.
    #[test]
    fn a_bare_lf_size_line_is_held_to_the_limit() {
        for wire in [&b"aa\nxxxx"[..], b"aa;ext\nxxxx", b"aa\r\nxxxx"] {
            let mut dec = ChunkedDecoder::default();
            let mut body = Vec::new();
            let err = dec.feed(wire, &mut body, 8).unwrap_err();
            assert_eq!(err.status, 413, "{:?}", String::from_utf8_lossy(wire));
            assert!(body.is_empty());
        }
        let mut dec = ChunkedDecoder::default();
        let mut body = Vec::new();
        let done = dec.feed(b"3\nabc\n0\n\n", &mut body, 3).unwrap();
        assert_eq!(
            (done, body.as_slice()),
            (ChunkProgress::Done(9), &b"abc"[..])
        );
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
}
