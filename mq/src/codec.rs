//! The byte layout of the `mq` database. One database holds every record, told apart by a
//! one-byte tag; a queue name (never containing NUL, see the spec's alphabet) is followed by a
//! NUL so that one queue's keys never share a prefix with another's, and numbers are big-endian
//! so that LMDB's byte order is their numeric order.
//!
//! | key | value |
//! |---|---|
//! | `#count` | number of queues, u64 |
//! | `q` name | [`QueueRec`] |
//! | `m` name NUL priori seq | a normal queue's message (ready or pending) |
//! | `p` name NUL priori seq | deadline of a pending message (unix ms) |
//! | `d` name NUL deadline priori seq | empty: the pending messages in deadline order |
//! | `b` name NUL idx | a push message: expiry (unix ms), then the body |

/// Key of the queue counter.
pub const COUNT_KEY: &[u8] = b"#count";
/// Prefix of every queue record.
pub const QUEUE_TAG: u8 = b'q';

const MSG_TAG: u8 = b'm';
const PENDING_TAG: u8 = b'p';
const DEADLINE_TAG: u8 = b'd';
const PUB_TAG: u8 = b'b';

fn prefix(tag: u8, name: &str, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len() + extra);
    k.push(tag);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// `q` name: no NUL, so that a cursor over `q` walks the names in ascending byte order.
pub fn queue_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(QUEUE_TAG);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn msg_key(name: &str, prio: u8, seq: u64) -> Vec<u8> {
    let mut k = prefix(MSG_TAG, name, 9);
    k.push(prio);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn pending_key(name: &str, prio: u8, seq: u64) -> Vec<u8> {
    let mut k = prefix(PENDING_TAG, name, 9);
    k.push(prio);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn deadline_prefix(name: &str) -> Vec<u8> {
    prefix(DEADLINE_TAG, name, 17)
}

pub fn deadline_key(name: &str, deadline: u64, prio: u8, seq: u64) -> Vec<u8> {
    let mut k = deadline_prefix(name);
    k.extend_from_slice(&deadline.to_be_bytes());
    k.push(prio);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The (deadline, priori, seq) of a `d` key that starts with `prefix`.
pub fn parse_deadline_key(prefix: &[u8], key: &[u8]) -> Option<(u64, u8, u64)> {
    let rest = key.strip_prefix(prefix)?;
    if rest.len() != 17 {
        return None;
    }
    let deadline = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let seq = u64::from_be_bytes(rest[9..].try_into().ok()?);
    Some((deadline, rest[8], seq))
}

pub fn pub_key(name: &str, idx: u64) -> Vec<u8> {
    let mut k = prefix(PUB_TAG, name, 8);
    k.extend_from_slice(&idx.to_be_bytes());
    k
}

pub fn u64_value(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// A push message's value: expiry, then the body.
pub fn pub_value(expiry: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&expiry.to_be_bytes());
    v.extend_from_slice(body);
    v
}

pub fn split_pub_value(v: &[u8]) -> Option<(u64, &[u8])> {
    if v.len() < 8 {
        return None;
    }
    let (e, body) = v.split_at(8);
    Some((u64_value(e)?, body))
}

/// A message token as clients see it: `<priori>:<seq>`.
pub fn token(prio: u8, seq: u64) -> String {
    format!("{prio}:{seq}")
}

/// Reads a token back; anything that is not one of ours is simply not pending.
pub fn parse_token(t: &[u8]) -> Option<(u8, u64)> {
    let colon = t.iter().position(|&b| b == b':')?;
    let (p, s) = (&t[..colon], &t[colon + 1..]);
    let prio = match p {
        b"0" => 0,
        b"1" => 1,
        b"2" => 2,
        _ => return None,
    };
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seq = s.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((prio, seq))
}

/// The two queue types of the spec (2.6), with their `type` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal = 0,
    Push = 1,
}

/// One queue's persistent state. For a push queue `read[0]`/`write[0]` are `si`/`ci`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRec {
    pub kind: Kind,
    pub lock: bool,
    /// 0 = no limit.
    pub max: u64,
    /// Redelivery timeout in `/timeout` minutes.
    pub timeout: u32,
    /// Unix seconds: creation (normal), last `pub` or creation (push).
    pub tm: u64,
    /// Per priority: sequence of the last message taken from the ready list.
    pub read: [u64; 3],
    /// Per priority: sequence of the last message added.
    pub write: [u64; 3],
    /// Pending deliveries.
    pub unacked: u64,
}

const REC_VERSION: u8 = 1;
const REC_LEN: usize = 3 + 4 + 8 * 9;

impl QueueRec {
    pub fn new(kind: Kind, timeout: u32, now_ms: u64) -> QueueRec {
        QueueRec {
            kind,
            lock: false,
            max: 0,
            timeout,
            tm: now_ms / 1000,
            read: [0; 3],
            write: [0; 3],
            unacked: 0,
        }
    }

    /// Ready messages of each priority (normal queues).
    pub fn ready(&self, prio: usize) -> u64 {
        self.write[prio].saturating_sub(self.read[prio])
    }

    pub fn ready_total(&self) -> u64 {
        (0..3).map(|p| self.ready(p)).sum()
    }

    pub fn si(&self) -> u64 {
        self.read[0]
    }

    pub fn ci(&self) -> u64 {
        self.write[0]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(REC_LEN);
        v.push(REC_VERSION);
        v.push(self.kind as u8);
        v.push(self.lock as u8);
        v.extend_from_slice(&self.timeout.to_be_bytes());
        for n in [self.max, self.tm]
            .iter()
            .chain(&self.read)
            .chain(&self.write)
            .chain(std::iter::once(&self.unacked))
        {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    pub fn decode(v: &[u8]) -> Option<QueueRec> {
        if v.len() != REC_LEN || v[0] != REC_VERSION {
            return None;
        }
        let kind = match v[1] {
            0 => Kind::Normal,
            1 => Kind::Push,
            _ => return None,
        };
        let timeout = u32::from_be_bytes(v[3..7].try_into().ok()?);
        let mut n = [0u64; 9];
        for (i, chunk) in v[7..].chunks_exact(8).enumerate() {
            n[i] = u64_value(chunk)?;
        }
        Some(QueueRec {
            kind,
            lock: v[2] != 0,
            max: n[0],
            timeout,
            tm: n[1],
            read: [n[2], n[3], n[4]],
            write: [n[5], n[6], n[7]],
            unacked: n[8],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let rec = QueueRec {
            kind: Kind::Push,
            lock: true,
            max: 7,
            timeout: 255,
            tm: 1_700_000_000,
            read: [1, 2, 3],
            write: [4, 5, 6],
            unacked: 9,
        };
        assert_eq!(QueueRec::decode(&rec.encode()), Some(rec));
        assert_eq!(QueueRec::decode(b"short"), None);
    }

    #[test]
    fn tokens() {
        assert_eq!(token(2, 17), "2:17");
        assert_eq!(parse_token(b"2:17"), Some((2, 17)));
        assert_eq!(parse_token(b"0:0"), Some((0, 0)));
        for bad in [
            &b"3:1"[..],
            b"1:",
            b":1",
            b"1",
            b"1:x",
            b"01:1",
            b"1:99999999999999999999",
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_of_one_queue_never_prefix_another() {
        let a = deadline_prefix("abc");
        assert!(!deadline_key("abc.d", 1, 0, 1).starts_with(&a));
        assert!(deadline_key("abc", 1, 0, 1).starts_with(&a));
        assert_eq!(
            parse_deadline_key(&a, &deadline_key("abc", 42, 2, 7)),
            Some((42, 2, 7))
        );
        // Big-endian: numeric order is byte order.
        assert!(msg_key("q", 0, 255) < msg_key("q", 0, 256));
    }
}
