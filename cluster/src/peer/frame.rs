//! The binary envelope of a message between nodes: what it is (append-entries, vote, a chunk
//! of a snapshot, a forwarded client write or read, a read index), which group it is for, and its payload
//! (the consensus message or command, encoded by its owner). Version-tagged and
//! length-checked; the decoder answers an error for anything else, since the bytes come from
//! the network (after authentication, but a bug of a peer must not panic this node either).
//!
//! Layout, big-endian, 12 bytes then the payload:
//!
//! ```text
//! magic "hp" (2) | version (1) | kind (1) | group (u32) | payload length (u32) | payload
//! ```

use std::fmt;

/// The first bytes of every frame: tells a frame from other bytes (an HTTP body of another
/// kind, a misdirected client) before anything else is read.
pub const MAGIC: [u8; 2] = *b"hp";

/// The layout's version; a decoder refuses every other.
pub const VERSION: u8 = 1;

/// The bytes before the payload.
pub const HEADER_LEN: usize = 12;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Raft's append-entries (heartbeats included).
    AppendEntries,
    /// Raft's request for a vote.
    Vote,
    /// One chunk of a snapshot being installed.
    InstallSnapshot,
    /// A client's write, forwarded to the group's leader.
    ForwardWrite,
    /// A client's read, forwarded to the group's leader (or a replica).
    ForwardRead,
    /// A follower's request for the leader's read index (a linearizable read on a follower).
    ReadIndex,
}

impl Kind {
    /// Every kind, in the order of their codes.
    pub const ALL: [Kind; 6] = [
        Kind::AppendEntries,
        Kind::Vote,
        Kind::InstallSnapshot,
        Kind::ForwardWrite,
        Kind::ForwardRead,
        Kind::ReadIndex,
    ];

    /// The byte on the wire. Codes are never reused: a new kind takes a new code.
    pub fn code(self) -> u8 {
        match self {
            Kind::AppendEntries => 1,
            Kind::Vote => 2,
            Kind::InstallSnapshot => 3,
            Kind::ForwardWrite => 4,
            Kind::ForwardRead => 5,
            Kind::ReadIndex => 6,
        }
    }

    /// The kind of a code, if it is one.
    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// A name for log lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AppendEntries => "append-entries",
            Kind::Vote => "vote",
            Kind::InstallSnapshot => "install-snapshot",
            Kind::ForwardWrite => "forwarded write",
            Kind::ForwardRead => "forwarded read",
            Kind::ReadIndex => "read index",
        }
    }
}

/// One message, its payload borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub group: u32,
    pub payload: &'a [u8],
}

/// What a receiver accepts: a group it has, and no payload larger than it is willing to hold
/// (checked from the header, before the payload is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Groups are `0..groups`.
    pub groups: u32,
    /// The largest payload, in bytes.
    pub max_payload: u32,
}

/// Why bytes are not a frame; `Display` is the log line's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end before the frame does (`need` in all, `have` there).
    Truncated { need: usize, have: usize },
    /// The magic is not `hp`.
    NotAFrame,
    /// A version this node does not speak.
    Version(u8),
    /// A kind this node does not know.
    Kind(u8),
    /// A group this cluster does not have.
    Group { group: u32, groups: u32 },
    /// The payload is larger than the receiver accepts (or than the layout can say).
    TooLong { len: u64, max: u64 },
    /// Bytes follow the one frame expected.
    Trailing(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { need, have } => {
                write!(f, "frame cut short ({have} of {need} bytes)")
            }
            FrameError::NotAFrame => write!(f, "not a peer frame (bad magic)"),
            FrameError::Version(v) => write!(f, "frame version {v}, this node speaks {VERSION}"),
            FrameError::Kind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::Group { group, groups } => {
                write!(f, "frame for group {group}, the cluster has {groups}")
            }
            FrameError::TooLong { len, max } => {
                write!(f, "frame payload of {len} bytes, at most {max} accepted")
            }
            FrameError::Trailing(n) => write!(f, "{n} bytes after the frame"),
        }
    }
}

impl std::error::Error for FrameError {}

impl<'a> Frame<'a> {
    /// The frame's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the frame's bytes to `out` (nothing when the payload is too long to say).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let len = u32::try_from(self.payload.len()).map_err(|_| FrameError::TooLong {
            len: self.payload.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind.code());
        out.extend_from_slice(&self.group.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.payload);
        Ok(())
    }

    /// Exactly one frame: `buf` must end where it does.
    pub fn decode(buf: &'a [u8], limits: &Limits) -> Result<Frame<'a>, FrameError> {
        match Frame::decode_prefix(buf, limits)? {
            Some((frame, used)) if used == buf.len() => Ok(frame),
            Some((_, used)) => Err(FrameError::Trailing(buf.len() - used)),
            None => Err(FrameError::Truncated {
                need: Frame::needed(buf, limits)?,
                have: buf.len(),
            }),
        }
    }

    /// The frame at the start of `buf` and the bytes it takes, for a stream; `None` while it
    /// is incomplete. A bad header is refused as soon as its 12 bytes are there.
    pub fn decode_prefix(
        buf: &'a [u8],
        limits: &Limits,
    ) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
        let Some(head) = Head::read(buf, limits)? else {
            return Ok(None);
        };
        let end = HEADER_LEN + head.len;
        let Some(payload) = buf.get(HEADER_LEN..end) else {
            return Ok(None);
        };
        let frame = Frame {
            kind: head.kind,
            group: head.group,
            payload,
        };
        Ok(Some((frame, end)))
    }

    /// How many bytes the frame starting `buf` takes in all, as far as `buf` tells: the header
    /// alone while that is incomplete.
    pub fn needed(buf: &[u8], limits: &Limits) -> Result<usize, FrameError> {
        Ok(Head::read(buf, limits)?.map_or(HEADER_LEN, |h| HEADER_LEN + h.len))
    }
}

/// A checked header.
struct Head {
    kind: Kind,
    group: u32,
    len: usize,
}

impl Head {
    /// The header at the start of `buf`, checked; `None` while fewer than its bytes are
    /// there, though what is there is checked already (magic, version, kind).
    fn read(buf: &[u8], limits: &Limits) -> Result<Option<Head>, FrameError> {
        let at = |i: usize| buf.get(i).copied();
        for (i, m) in MAGIC.iter().enumerate() {
            if at(i).is_some_and(|b| b != *m) {
                return Err(FrameError::NotAFrame);
            }
        }
        if let Some(v) = at(2).filter(|&v| v != VERSION) {
            return Err(FrameError::Version(v));
        }
        let kind = match at(3) {
            Some(code) => Some(Kind::from_code(code).ok_or(FrameError::Kind(code))?),
            None => None,
        };
        let (Some(kind), Some(group), Some(len)) = (kind, be32(buf, 4), be32(buf, 8)) else {
            return Ok(None);
        };
        if group >= limits.groups {
            let groups = limits.groups;
            return Err(FrameError::Group { group, groups });
        }
        if len > limits.max_payload {
            let (len, max) = (u64::from(len), u64::from(limits.max_payload));
            return Err(FrameError::TooLong { len, max });
        }
        // u32 fits in usize on every target this daemon builds for (64-bit Unix).
        let len = usize::try_from(len).map_err(|_| FrameError::TooLong {
            len: u64::from(len),
            max: usize::MAX as u64,
        })?;
        Ok(Some(Head { kind, group, len }))
    }
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        groups: 16,
        max_payload: 1 << 20,
    };

    fn frame(kind: Kind, group: u32, payload: &[u8]) -> Frame<'_> {
        Frame {
            kind,
            group,
            payload,
        }
    }

    #[test]
    fn frames_round_trip() {
        let big = vec![0xa5; 70_000];
        for kind in Kind::ALL {
            for (group, payload) in [(0, &b""[..]), (15, b"\x00\xff entries"), (7, &big)] {
                let f = frame(kind, group, payload);
                let bytes = f.encode().unwrap();
                assert_eq!(bytes.len(), HEADER_LEN + payload.len());
                assert_eq!(Frame::decode(&bytes, &LIMITS), Ok(f));
                assert_eq!(Frame::needed(&bytes, &LIMITS), Ok(bytes.len()));
            }
            assert_eq!(Kind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(7), None);
    }

    #[test]
    fn the_layout_is_as_documented() {
        let bytes = frame(Kind::Vote, 0x0102_0304, b"xy").encode().unwrap();
        assert_eq!(bytes, b"hp\x01\x02\x01\x02\x03\x04\x00\x00\x00\x02xy");
    }

    #[test]
    fn a_stream_of_frames_decodes_at_every_split() {
        let frames = [
            frame(Kind::AppendEntries, 1, b"first"),
            frame(Kind::ForwardWrite, 2, b""),
            frame(Kind::InstallSnapshot, 3, b"third one"),
        ];
        let mut stream = Vec::new();
        for f in &frames {
            f.encode_into(&mut stream).unwrap();
        }
        let mut at = 0;
        for f in &frames {
            let whole = Frame::decode_prefix(&stream[at..], &LIMITS).unwrap();
            let (got, used) = whole.expect("a whole frame");
            assert_eq!(got, *f);
            for cut in 0..used {
                let part = &stream[at..at + cut];
                assert_eq!(Frame::decode_prefix(part, &LIMITS), Ok(None), "cut {cut}");
                let need = if cut < HEADER_LEN { HEADER_LEN } else { used };
                assert_eq!(Frame::needed(part, &LIMITS), Ok(need));
                assert_eq!(
                    Frame::decode(part, &LIMITS),
                    Err(FrameError::Truncated { need, have: cut })
                );
            }
            at += used;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn bad_headers_are_refused_with_their_reason() {
        let good = frame(Kind::Vote, 3, b"abc").encode().unwrap();
        let with = |i: usize, b: u8| {
            let mut v = good.clone();
            v[i] = b;
            v
        };
        fn decode(v: &[u8]) -> Result<Frame<'_>, FrameError> {
            Frame::decode(v, &LIMITS)
        }
        assert_eq!(decode(&with(0, b'H')), Err(FrameError::NotAFrame));
        assert_eq!(decode(&with(1, 0)), Err(FrameError::NotAFrame));
        assert_eq!(decode(&with(2, 2)), Err(FrameError::Version(2)));
        assert_eq!(decode(&with(3, 0)), Err(FrameError::Kind(0)));
        assert_eq!(decode(&with(3, 99)), Err(FrameError::Kind(99)));
        assert_eq!(
            decode(&with(7, 16)),
            Err(FrameError::Group {
                group: 16,
                groups: 16
            })
        );
        let huge = with(8, 0xff);
        assert_eq!(
            decode(&huge),
            Err(FrameError::TooLong {
                len: 0xff00_0003,
                max: 1 << 20
            })
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(FrameError::Trailing(1)));
        // Refused early: a bad magic or kind is known from the first bytes.
        assert_eq!(decode(b"G"), Err(FrameError::NotAFrame));
        assert_eq!(decode(b"GET / HTTP/1.1"), Err(FrameError::NotAFrame));
        assert_eq!(decode(b"hp\x01\x09"), Err(FrameError::Kind(9)));
        assert_eq!(
            decode(b""),
            Err(FrameError::Truncated {
                need: HEADER_LEN,
                have: 0
            })
        );
        // Zero groups accept nothing.
        let none = Limits {
            groups: 0,
            ..LIMITS
        };
        assert!(matches!(
            Frame::decode(&good, &none),
            Err(FrameError::Group { .. })
        ));
    }

    #[test]
    fn errors_read_as_log_lines() {
        assert_eq!(FrameError::Kind(9).to_string(), "unknown frame kind 9");
        assert_eq!(
            FrameError::Truncated { need: 12, have: 3 }.to_string(),
            "frame cut short (3 of 12 bytes)"
        );
        assert_eq!(Kind::InstallSnapshot.name(), "install-snapshot");
    }

    /// xorshift64: reproducible garbage without a dependency.
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn garbage_never_panics_and_what_decodes_re_encodes_the_same() {
        let mut seed = 0x853c_49e6_748f_ea9b_u64;
        let good = frame(Kind::ForwardRead, 5, b"read me").encode().unwrap();
        for round in 0..50_000 {
            let mut buf: Vec<u8> = if round % 2 == 0 {
                // Pure noise, sometimes with a valid start so that the later checks run.
                let len = (next(&mut seed) % 40) as usize;
                let mut v: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
                if round % 4 == 0 && v.len() >= 4 {
                    v[..4].copy_from_slice(b"hp\x01\x01");
                }
                v
            } else {
                // A valid frame with a few bytes changed, cut or extended.
                let mut v = good.clone();
                for _ in 0..1 + next(&mut seed) % 3 {
                    let i = (next(&mut seed) as usize) % v.len();
                    v[i] = next(&mut seed) as u8;
                }
                v
            };
            match next(&mut seed) % 4 {
                0 => buf.truncate((next(&mut seed) as usize) % (buf.len() + 1)),
                1 => buf.push(next(&mut seed) as u8),
                _ => {}
            }
            let limits = Limits {
                groups: (next(&mut seed) % 20) as u32,
                max_payload: (next(&mut seed) % 64) as u32,
            };
            let _ = Frame::needed(&buf, &limits);
            if let Ok(Some((f, used))) = Frame::decode_prefix(&buf, &limits) {
                assert_eq!(f.encode().unwrap(), buf[..used]);
                assert!(f.group < limits.groups);
                assert!(f.payload.len() <= limits.max_payload as usize);
            }
            if let Ok(f) = Frame::decode(&buf, &limits) {
                assert_eq!(f.encode().unwrap(), buf);
            }
        }
    }
}
