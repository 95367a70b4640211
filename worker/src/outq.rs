//! A connection's queue of outgoing bytes. Heads and small bodies are appended to one growing
//! chunk; a large body is moved in as its own chunk, so a value read from storage is copied
//! once (into the socket) instead of twice; a large value lent in place by the store
//! ([`storage::InPlace`]) is queued as it is and not copied at all, as long as it is written
//! out before the pass's batch ends ([`OutQueue::own_lent`] copies what is left of it then).
//! Writes use `writev` over the queued chunks.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Bodies at least this large travel as their own chunk instead of being copied.
pub const OWN_CHUNK_MIN: usize = 16 * 1024;
/// Most chunks handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// Queued bytes: owned, or a value lent by the store for the rest of the pass.
#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Lent(storage::InPlace),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            // SAFETY: a lent chunk is only in the queue while the batch that lent it lives:
            // the event loop calls `own_lent` on every queue before the batch ends.
            Chunk::Lent(v) => unsafe { v.bytes() },
        }
    }
}

#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_pos: usize,
    /// The back chunk may be appended to (it is not a moved-in body, and no mark was set
    /// after it).
    back_open: bool,
    /// A written chunk kept for reuse.
    spare: Vec<u8>,
}

/// What [`OutQueue::write_to`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    All,
    /// The socket is full; wait for writability.
    Partly,
    /// The peer is gone.
    Closed,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The chunk to append small pieces to.
    pub fn open_chunk(&mut self) -> &mut Vec<u8> {
        if !self.back_open || !matches!(self.chunks.back(), Some(Chunk::Owned(_))) {
            self.chunks
                .push_back(Chunk::Owned(std::mem::take(&mut self.spare)));
            self.back_open = true;
        }
        match self.chunks.back_mut() {
            Some(Chunk::Owned(v)) => v,
            // Just pushed an owned chunk when the back was anything else.
            _ => unreachable!("the open chunk is owned"),
        }
    }

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.open_chunk().extend_from_slice(bytes);
    }

    /// Queues a body: moved in whole when large, appended when small.
    pub fn push_body(&mut self, body: Vec<u8>) {
        if body.len() >= OWN_CHUNK_MIN {
            self.chunks.push_back(Chunk::Owned(body));
            self.back_open = false;
        } else if !body.is_empty() {
            self.push_bytes(&body);
        }
    }

    /// Queues a value lent by the store, uncopied. [`OutQueue::own_lent`] must run before the
    /// batch that lent it ends.
    pub fn push_lent(&mut self, value: storage::InPlace) {
        if !value.is_empty() {
            self.chunks.push_back(Chunk::Lent(value));
            self.back_open = false;
        }
    }

    /// Copies what is left to write of every lent value into owned memory: called before the
    /// batch that lent them ends. Returns whether there was any.
    pub fn own_lent(&mut self) -> bool {
        let mut any = false;
        for (i, chunk) in self.chunks.iter_mut().enumerate() {
            if let Chunk::Lent(_) = chunk {
                let start = if i == 0 { self.front_pos } else { 0 };
                *chunk = Chunk::Owned(chunk.bytes()[start..].to_vec());
                if i == 0 {
                    self.front_pos = 0;
                }
                any = true;
            }
        }
        any
    }

    /// Starts a new chunk and returns a mark for [`OutQueue::truncate_to`]: everything queued
    /// after the mark can be dropped as long as none of it was written.
    pub fn mark(&mut self) -> usize {
        self.back_open = false;
        self.chunks.len()
    }

    /// Drops everything queued since `mark` (never bytes already written).
    pub fn truncate_to(&mut self, mark: usize) {
        let keep = if self.front_pos > 0 {
            mark.max(1)
        } else {
            mark
        };
        self.chunks.truncate(keep);
        self.back_open = false;
    }

    /// Writes as much as the socket takes; also returns how many bytes that was.
    pub fn write_to(&mut self, w: &mut impl Write) -> (Flushed, usize) {
        let mut total = 0;
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let start = if i == 0 { self.front_pos } else { 0 };
                slices[i] = IoSlice::new(&chunk.bytes()[start..]);
                n = i + 1;
            }
            match w.write_vectored(&slices[..n]) {
                Ok(0) => return (Flushed::Closed, total),
                Ok(written) => {
                    total += written;
                    self.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (Flushed::Partly, total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (Flushed::Closed, total),
            }
        }
        (Flushed::All, total)
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.bytes().len() - self.front_pos;
            if written < left {
                self.front_pos += written;
                return;
            }
            written -= left;
            self.front_pos = 0;
            if let Some(Chunk::Owned(mut done)) = self.chunks.pop_front() {
                // Reuse a small written chunk for the next replies instead of reallocating.
                if done.capacity() <= OWN_CHUNK_MIN && self.spare.capacity() == 0 {
                    done.clear();
                    self.spare = done;
                }
            }
            if self.chunks.is_empty() {
                self.back_open = false;
            }
        }
    }

    /// Frees what an idle connection does not need.
    pub fn shrink(&mut self) {
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
            self.spare = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_come_out_in_order_across_partial_writes() {
        let mut q = OutQueue::default();
        let mut expected = Vec::new();
        for i in 0..20u8 {
            let head = vec![b'h', i];
            let body = vec![i; if i % 4 == 0 { 40_000 } else { 10 }];
            q.push_bytes(&head);
            expected.extend_from_slice(&head);
            expected.extend_from_slice(&body);
            q.push_body(body);
        }
        let mut w = Trickle {
            got: Vec::new(),
            cap: 7_777,
            calls: 0,
        };
        let mut rounds = 0;
        while q.write_to(&mut w).0 != Flushed::All {
            rounds += 1;
            assert!(rounds < 10_000);
        }
        assert_eq!(w.got, expected);
        assert!(q.is_empty());
    }

    #[test]
    fn a_lent_value_partly_written_is_owned_from_where_it_stopped() {
        static VALUE: [u8; 50_000] = {
            let mut v = [0u8; 50_000];
            let mut i = 0;
            while i < v.len() {
                v[i] = (i % 251) as u8;
                i += 1;
            }
            v
        };
        let mut q = OutQueue::default();
        q.push_bytes(b"head");
        q.push_lent(storage::InPlace::from(&VALUE[..]));
        q.push_bytes(b"next");
        let mut w = Trickle {
            got: Vec::new(),
            cap: 10_000,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut w).0, Flushed::Partly);
        assert!(q.own_lent(), "the value was still queued");
        assert!(!q.own_lent(), "nothing lent is left");
        while q.write_to(&mut w).0 != Flushed::All {}
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&VALUE);
        expected.extend_from_slice(b"next");
        assert_eq!(w.got, expected);
    }

    #[test]
    fn truncate_drops_only_what_came_after_the_mark() {
        let mut q = OutQueue::default();
        q.push_bytes(b"old");
        let mark = q.mark();
        q.push_bytes(b"new");
        q.push_body(vec![1; 20_000]);
        q.truncate_to(mark);
        q.push_bytes(b"500");
        let mut w = Trickle {
            got: Vec::new(),
            cap: 1 << 20,
            calls: 0,
        };
        while q.write_to(&mut w).0 != Flushed::All {}
        assert_eq!(w.got, b"old500");
    }
}
