//! The local protocol between a worker and the node's cluster helper process (`cluster.md` §9):
//! workers hand the helper replicated writes ([`Message::Propose`]), read barriers
//! ([`Message::ReadBarrier`]), reads to forward to another node ([`Message::Fetch`]) and
//! report requests ([`Message::Report`]) over a Unix socket, and the helper answers each by
//! its request id, in any order. Pure (no runtime, no I/O) so that the worker's mio loop and
//! the helper's async side share the one codec.
//!
//! A frame is `u32 BE length | u8 kind | u64 BE request id | payload`, the length counting
//! everything after itself. The decoder is streaming ([`decode_prefix`]): it answers `None`
//! until a whole frame is buffered, and an error (never a panic) on bytes that are no frame.
//!
//! Payloads (all integers big-endian):
//!
//! | kind | message | payload |
//! |---|---|---|
//! | 1 | `Propose` | `u32 group \| command bytes` |
//! | 2 | `ReadBarrier` | `u32 group` |
//! | 3 | `Applied` | `raft::Applied::encode` |
//! | 4 | `ReadReady` | empty |
//! | 5 | `Unavailable` | UTF-8 reason |
//! | 6 | `Unknown` | UTF-8 reason |
//! | 7 | `Fetch` | `u32 node \| u32 n \| n bytes target \| authorization bytes (the rest)` |
//! | 8 | `Report` | `u8 what` (`report::Report::code`) |
//! | 9 | `Reply` | `u16 status \| u16 count \| count × (u16 n, n bytes name, u32 m, m bytes value) \| body (the rest)` |
//!
//! Header names and values of a `Reply` are UTF-8.

use std::fmt;

use crate::raft::Applied;

/// The largest frame either side accepts (length field value): a value of a write travels in
/// one frame, so this bounds the largest replicated write; it also stops a garbage length
/// from making a reader buffer without end.
pub const MAX_FRAME: usize = 1 << 30;

/// `u8 kind | u64 request id`: what every frame carries after its length.
const FIXED: usize = 1 + 8;

const PROPOSE: u8 = 1;
const READ_BARRIER: u8 = 2;
const APPLIED: u8 = 3;
const READ_READY: u8 = 4;
const UNAVAILABLE: u8 = 5;
const UNKNOWN: u8 = 6;
const FETCH: u8 = 7;
const REPORT: u8 = 8;
const REPLY: u8 = 9;
/// The last kind byte.
const LAST_KIND: u8 = REPLY;

/// One frame: the request id the worker chose, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: u64,
    pub message: Message,
}

/// What a frame says. `Propose`, `ReadBarrier`, `Fetch` and `Report` go worker -> helper,
/// the others helper -> worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Replicate `command` (the bytes of `storage::Command::encode`) through `group`; the
    /// answer is `Applied`, `Unavailable` or `Unknown`.
    Propose { group: u32, command: Vec<u8> },
    /// Answer `ReadReady` once this node's store has applied every write of `group`
    /// committed before the barrier arrived (a linearizable read may then run locally).
    ReadBarrier { group: u32 },
    /// The proposal was committed and applied; its answer.
    Applied(Applied),
    /// The read barrier is passed.
    ReadReady,
    /// Certainly not applied (no leader, not a member, shutting down): the client may retry.
    Unavailable { why: String },
    /// The outcome is unknown (a timeout, a leader lost after the append): it may be applied.
    Unknown { why: String },
    /// GET `target` (an HTTP request target, `path?query`) from the client address of node
    /// `node` (its index in the conf's node lines), marked as forwarded, with the client's
    /// `Authorization` header value (empty for none); answered by `Reply`, or `Unavailable`
    /// when that node could not be asked.
    Fetch {
        node: u32,
        target: Vec<u8>,
        authorization: Vec<u8>,
    },
    /// The report `what` (`report::Report::code`) of this node; answered by `Reply`.
    Report { what: u8 },
    /// An HTTP answer: a `Fetch`'s response, or a report (`Content-Type` among the headers).
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// Why bytes are not a frame. Any of these ends the connection: the stream is out of step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The length field is below the fixed part or above [`MAX_FRAME`].
    Length(usize),
    /// No message has this kind byte.
    Kind(u8),
    /// The payload does not fit its kind.
    Payload(u8),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Length(n) => write!(f, "local frame length {n} out of range"),
            Error::Kind(k) => write!(f, "unknown local frame kind {k}"),
            Error::Payload(k) => write!(f, "malformed payload of local frame kind {k}"),
        }
    }
}

impl std::error::Error for Error {}

impl Frame {
    /// Appends the frame's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let kind = match &self.message {
            Message::Propose { .. } => PROPOSE,
            Message::ReadBarrier { .. } => READ_BARRIER,
            Message::Applied(_) => APPLIED,
            Message::ReadReady => READ_READY,
            Message::Unavailable { .. } => UNAVAILABLE,
            Message::Unknown { .. } => UNKNOWN,
            Message::Fetch { .. } => FETCH,
            Message::Report { .. } => REPORT,
            Message::Reply { .. } => REPLY,
        };
        out.push(kind);
        out.extend_from_slice(&self.id.to_be_bytes());
        match &self.message {
            Message::Propose { group, command } => {
                out.extend_from_slice(&group.to_be_bytes());
                out.extend_from_slice(command);
            }
            Message::ReadBarrier { group } => out.extend_from_slice(&group.to_be_bytes()),
            Message::Applied(applied) => applied.encode(out),
            Message::ReadReady => {}
            Message::Unavailable { why } | Message::Unknown { why } => {
                out.extend_from_slice(why.as_bytes())
            }
            Message::Fetch {
                node,
                target,
                authorization,
            } => {
                out.extend_from_slice(&node.to_be_bytes());
                out.extend_from_slice(&len32(target.len()).to_be_bytes());
                out.extend_from_slice(target);
                out.extend_from_slice(authorization);
            }
            Message::Report { what } => out.push(*what),
            Message::Reply {
                status,
                headers,
                body,
            } => {
                out.extend_from_slice(&status.to_be_bytes());
                // More headers, or longer names, than a u16 counts are the writer's bug;
                // what does not fit is left out rather than corrupt the frame.
                let count = headers.len().min(u16::MAX as usize);
                out.extend_from_slice(&(count as u16).to_be_bytes());
                for (name, value) in &headers[..count] {
                    let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
                    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
                    out.extend_from_slice(name);
                    out.extend_from_slice(&len32(value.len()).to_be_bytes());
                    out.extend_from_slice(value.as_bytes());
                }
                out.extend_from_slice(body);
            }
        }
        // A frame over the cap is the writer's bug (the worker caps bodies far below it);
        // it is written anyway and the reader refuses it, which ends the connection.
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// A length as a u32 field (frames are far below 4 GiB: [`MAX_FRAME`]).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A cursor over a payload: every take is checked, none panics.
struct Cursor<'p>(&'p [u8]);

impl<'p> Cursor<'p> {
    fn take(&mut self, n: usize) -> Option<&'p [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn text(&mut self, n: usize) -> Option<String> {
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode_fetch(p: &[u8]) -> Option<Message> {
    let mut c = Cursor(p);
    let node = c.u32()?;
    let n = c.u32()? as usize;
    let target = c.take(n)?.to_vec();
    Some(Message::Fetch {
        node,
        target,
        authorization: c.0.to_vec(),
    })
}

fn decode_reply(p: &[u8]) -> Option<Message> {
    let mut c = Cursor(p);
    let status = c.u16()?;
    let count = c.u16()? as usize;
    // Each header takes at least 6 bytes: a count beyond that is garbage, not an allocation.
    let mut headers = Vec::with_capacity(count.min(c.0.len() / 6));
    for _ in 0..count {
        let n = c.u16()? as usize;
        let name = c.text(n)?;
        let m = c.u32()? as usize;
        headers.push((name, c.text(m)?));
    }
    Some(Message::Reply {
        status,
        headers,
        body: c.0.to_vec(),
    })
}

/// The first frame of `buf`, and how many bytes it took; `None` while it is incomplete.
pub fn decode_prefix(buf: &[u8]) -> Result<Option<(Frame, usize)>, Error> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if !(FIXED..=MAX_FRAME).contains(&len) {
        return Err(Error::Length(len));
    }
    let kind = buf.get(4).copied();
    if let Some(k) = kind.filter(|k| !(PROPOSE..=LAST_KIND).contains(k)) {
        // Refused before the rest arrives: a garbage stream need not be buffered.
        return Err(Error::Kind(k));
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let kind = body[0];
    let mut id = [0u8; 8];
    id.copy_from_slice(&body[1..FIXED]);
    let payload = &body[FIXED..];
    let bad = || Error::Payload(kind);
    let group =
        |p: &[u8]| -> Option<u32> { Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?)) };
    let text = |p: &[u8]| String::from_utf8(p.to_vec()).map_err(|_| bad());
    let message = match kind {
        PROPOSE => Message::Propose {
            group: group(payload).ok_or_else(bad)?,
            command: payload[4..].to_vec(),
        },
        READ_BARRIER if payload.len() == 4 => Message::ReadBarrier {
            group: group(payload).ok_or_else(bad)?,
        },
        APPLIED => Message::Applied(Applied::decode(payload).map_err(|_| bad())?),
        READ_READY if payload.is_empty() => Message::ReadReady,
        UNAVAILABLE => Message::Unavailable {
            why: text(payload)?,
        },
        UNKNOWN => Message::Unknown {
            why: text(payload)?,
        },
        FETCH => decode_fetch(payload).ok_or_else(bad)?,
        REPORT if payload.len() == 1 => Message::Report { what: payload[0] },
        REPLY => decode_reply(payload).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let frame = Frame {
        id: u64::from_be_bytes(id),
        message,
    };
    Ok(Some((frame, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame> {
        let messages = vec![
            Message::Propose {
                group: 7,
                command: b"some command bytes".to_vec(),
            },
            Message::Propose {
                group: u32::MAX,
                command: Vec::new(),
            },
            Message::ReadBarrier { group: 3 },
            Message::Applied(Applied::Written { ver: 9 }),
            Message::Applied(Applied::Invalid("why".into())),
            Message::Applied(Applied::Float(-1.5)),
            Message::ReadReady,
            Message::Unavailable {
                why: "no leader".into(),
            },
            Message::Unknown { why: String::new() },
            Message::Fetch {
                node: 4,
                target: b"/get?key=a%20b&consistency=local".to_vec(),
                authorization: b"Basic dTpw".to_vec(),
            },
            Message::Fetch {
                node: 0,
                target: Vec::new(),
                authorization: Vec::new(),
            },
            Message::Report { what: 3 },
            Message::Reply {
                status: 409,
                headers: vec![
                    ("Version1".into(), "2".into()),
                    ("Val-Offset".into(), String::new()),
                ],
                body: b"v1v2".to_vec(),
            },
            Message::Reply {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            },
        ];
        messages
            .into_iter()
            .enumerate()
            .map(|(i, message)| Frame {
                id: (i as u64) << 40 | 0xab,
                message,
            })
            .collect()
    }

    #[test]
    fn frames_round_trip_one_by_one_and_streamed() {
        let mut stream = Vec::new();
        for f in samples() {
            let mut one = Vec::new();
            f.encode(&mut one);
            assert_eq!(decode_prefix(&one), Ok(Some((f.clone(), one.len()))));
            // Every strict prefix is incomplete, never an error.
            for cut in 0..one.len() {
                assert_eq!(decode_prefix(&one[..cut]), Ok(None), "{f:?} cut at {cut}");
            }
            stream.extend_from_slice(&one);
        }
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((f, used)) = decode_prefix(&stream[at..]).unwrap() {
            got.push(f);
            at += used;
        }
        assert_eq!(at, stream.len());
        assert_eq!(got, samples());
    }

    #[test]
    fn bad_lengths_kinds_and_payloads_are_errors() {
        assert_eq!(decode_prefix(&[0, 0, 0, 8]), Err(Error::Length(8)));
        let over = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert_eq!(decode_prefix(&over), Err(Error::Length(MAX_FRAME + 1)));
        let mut f = vec![0, 0, 0, 9, 99];
        assert_eq!(decode_prefix(&f), Err(Error::Kind(99)));
        f[4] = READ_READY;
        f.extend_from_slice(&[0; 8]);
        assert!(decode_prefix(&f).unwrap().is_some());
        // ReadReady with a payload, a short Propose, a bad Applied, a non-UTF-8 reason.
        for (kind, payload) in [
            (READ_READY, &[1u8][..]),
            (PROPOSE, &[0, 0, 1][..]),
            (READ_BARRIER, &[0, 0, 0, 1, 2][..]),
            (APPLIED, &[200][..]),
            (UNKNOWN, &[0xff, 0xfe][..]),
            // A Fetch whose target runs past the payload, a short one, an empty Report.
            (FETCH, &[0, 0, 0, 1, 0, 0, 0, 9, b'/'][..]),
            (FETCH, &[0, 0, 0][..]),
            (REPORT, &[][..]),
            (REPORT, &[1, 2][..]),
            // A Reply counting a header it does not have; one whose name is not UTF-8.
            (REPLY, &[0, 200, 0, 1][..]),
            (REPLY, &[0, 200, 0, 1, 0, 1, 0xff, 0, 0, 0, 0][..]),
            (REPLY, &[0][..]),
        ] {
            let mut f = ((FIXED + payload.len()) as u32).to_be_bytes().to_vec();
            f.push(kind);
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(payload);
            assert_eq!(decode_prefix(&f), Err(Error::Payload(kind)));
        }
    }

    /// A small deterministic generator (xorshift): the fuzz needs no crate and repeats.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut valid = Vec::new();
        for f in samples() {
            f.encode(&mut valid);
        }
        for round in 0..20_000 {
            let len = (next(&mut seed) % 64) as usize;
            let mut buf: Vec<u8> = if round % 2 == 0 {
                (0..len).map(|_| next(&mut seed) as u8).collect()
            } else {
                // Valid frames with a few bytes flipped: deep into the payload decoders.
                let mut b = valid.clone();
                for _ in 0..1 + next(&mut seed) % 3 {
                    let at = (next(&mut seed) as usize) % b.len();
                    b[at] ^= next(&mut seed) as u8 | 1;
                }
                b
            };
            if round % 3 == 0 && buf.len() >= 4 {
                // A plausible small length, so the body is parsed rather than refused at once.
                let l = (FIXED + (next(&mut seed) % 24) as usize) as u32;
                buf[..4].copy_from_slice(&l.to_be_bytes());
            }
            let mut at = 0;
            while let Ok(Some((_, used))) = decode_prefix(&buf[at..]) {
                assert!(used > 0 && at + used <= buf.len());
                at += used;
            }
        }
    }
}
