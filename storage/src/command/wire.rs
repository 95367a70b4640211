//! The binary form of a [`Command`], for a log of commands: a version byte, the write's tag,
//! `now_ms` (u64 LE), then the write's fields in declaration order. Byte strings and table
//! names are a LEB128 length and the bytes; `ver` and `max` are LEB128 (shortest form only, so
//! a command has one encoding); expiries, deltas and
//! scores are 8 bytes LE (an `f64` as its bits); a [`ZaddMode`] is one byte. Decoding borrows
//! the byte strings from the input, checks everything (lengths, UTF-8 of table names, no
//! trailing bytes) and never panics.

use super::{Command, Write};
use crate::{Result, StorageError, ZaddMode};

/// Version of the encoding, the first byte of every encoded command.
const VERSION: u8 = 1;

const PUT: u8 = 1;
const DEL: u8 = 2;
const HSET: u8 = 3;
const HINCRBY: u8 = 4;
const HDEL: u8 = 5;
const SADD: u8 = 6;
const SREM: u8 = 7;
const ZADD: u8 = 8;
const ZREM: u8 = 9;
const PURGE: u8 = 10;
const PURGE_SLOTS: u8 = 11;
const CACHE_PUT: u8 = 20;
const CACHE_DEL: u8 = 21;
const CACHE_EXPIRE: u8 = 22;
const CACHE_PERSIST: u8 = 23;
const CACHE_APPEND: u8 = 24;
const CACHE_HSET: u8 = 25;
const CACHE_HDEL: u8 = 26;
const CACHE_HINCRBY: u8 = 27;
const CACHE_HINCRBYFLOAT: u8 = 28;
const CACHE_PURGE: u8 = 29;

const MALFORMED: StorageError = StorageError::Invalid("malformed command");

/// Appends the fields of one command.
struct Out<'o>(&'o mut Vec<u8>);

impl Out<'_> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(v as u64)
    }

    fn var(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.var(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads the fields of one command; `None` on anything malformed.
struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(self.u64()? as i64)
    }

    fn var(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte holds the top bit only; more would overflow.
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                // One encoding per number: no trailing zero groups.
                return (b != 0 || shift == 0).then_some(v);
            }
        }
        None
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.var()?).ok()
    }

    fn usize(&mut self) -> Option<usize> {
        usize::try_from(self.var()?).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.usize()?;
        self.take(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn mode(&mut self) -> Option<ZaddMode> {
        match self.u8()? {
            0 => Some(ZaddMode::Set),
            1 => Some(ZaddMode::Add),
            2 => Some(ZaddMode::Subtract),
            _ => None,
        }
    }
}

fn mode_byte(mode: ZaddMode) -> u8 {
    match mode {
        ZaddMode::Set => 0,
        ZaddMode::Add => 1,
        ZaddMode::Subtract => 2,
    }
}

impl<'a> Command<'a> {
    /// Appends the binary form of the command to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag = match self.write {
            Write::Put { .. } => PUT,
            Write::Del { .. } => DEL,
            Write::Hset { .. } => HSET,
            Write::Hincrby { .. } => HINCRBY,
            Write::Hdel { .. } => HDEL,
            Write::Sadd { .. } => SADD,
            Write::Srem { .. } => SREM,
            Write::Zadd { .. } => ZADD,
            Write::Zrem { .. } => ZREM,
            Write::PurgeExpired { .. } => PURGE,
            Write::PurgeExpiredSlots { .. } => PURGE_SLOTS,
            Write::CachePut { .. } => CACHE_PUT,
            Write::CacheDel { .. } => CACHE_DEL,
            Write::CacheExpire { .. } => CACHE_EXPIRE,
            Write::CachePersist { .. } => CACHE_PERSIST,
            Write::CacheAppend { .. } => CACHE_APPEND,
            Write::CacheHset { .. } => CACHE_HSET,
            Write::CacheHdel { .. } => CACHE_HDEL,
            Write::CacheHincrby { .. } => CACHE_HINCRBY,
            Write::CacheHincrbyfloat { .. } => CACHE_HINCRBYFLOAT,
            Write::CachePurgeExpired { .. } => CACHE_PURGE,
        };
        let mut o = Out(out);
        o.u8(VERSION).u8(tag).u64(self.now_ms);
        match self.write {
            Write::Put {
                key,
                val,
                expires_at,
                ver,
            } => o.bytes(key).bytes(val).u64(expires_at).var(ver.into()),
            Write::Del { key, ver } => o.bytes(key).var(ver.into()),
            Write::Hset {
                tb,
                key,
                val,
                expires_at,
                ver,
            } => o
                .bytes(tb.as_bytes())
                .bytes(key)
                .bytes(val)
                .u64(expires_at)
                .var(ver.into()),
            Write::Hincrby {
                tb,
                key,
                delta,
                expires_at,
                ver,
            } => o
                .bytes(tb.as_bytes())
                .bytes(key)
                .i64(delta)
                .u64(expires_at)
                .var(ver.into()),
            Write::Hdel { tb, key, ver }
            | Write::Srem {
                tb,
                member: key,
                ver,
            }
            | Write::Zrem {
                tb,
                member: key,
                ver,
            } => o.bytes(tb.as_bytes()).bytes(key).var(ver.into()),
            Write::Sadd {
                tb,
                member,
                expires_at,
                ver,
            } => o
                .bytes(tb.as_bytes())
                .bytes(member)
                .u64(expires_at)
                .var(ver.into()),
            Write::Zadd {
                tb,
                member,
                score,
                mode,
                expires_at,
                ver,
            } => o
                .bytes(tb.as_bytes())
                .bytes(member)
                .i64(score)
                .u8(mode_byte(mode))
                .u64(expires_at)
                .var(ver.into()),
            Write::PurgeExpired { max } | Write::CachePurgeExpired { max } => o.var(max as u64),
            Write::PurgeExpiredSlots { start, end, max } => {
                o.var(start.into()).var(end.into()).var(max as u64)
            }
            Write::CachePut {
                key,
                val,
                expires_at,
            } => o.bytes(key).bytes(val).u64(expires_at),
            Write::CacheDel { key } | Write::CachePersist { key } => o.bytes(key),
            Write::CacheExpire { key, expires_at } => o.bytes(key).u64(expires_at),
            Write::CacheAppend { key, val } => o.bytes(key).bytes(val),
            Write::CacheHset { tb, key, val } => o.bytes(tb.as_bytes()).bytes(key).bytes(val),
            Write::CacheHdel { tb, key } => o.bytes(tb.as_bytes()).bytes(key),
            Write::CacheHincrby { tb, key, delta } => o.bytes(tb.as_bytes()).bytes(key).i64(delta),
            Write::CacheHincrbyfloat { tb, key, delta } => {
                o.bytes(tb.as_bytes()).bytes(key).u64(delta.to_bits())
            }
        };
    }

    /// A command from its binary form ([`Command::encode`]), borrowing keys and values from
    /// `buf`; `Invalid` for anything else (another version, an unknown write, a field cut
    /// short, a table name that is not UTF-8, bytes left over).
    pub fn decode(buf: &'a [u8]) -> Result<Command<'a>> {
        Self::read(&mut In(buf)).ok_or(MALFORMED)
    }

    fn read(i: &mut In<'a>) -> Option<Command<'a>> {
        if i.u8()? != VERSION {
            return None;
        }
        let tag = i.u8()?;
        let now_ms = i.u64()?;
        let write = match tag {
            PUT => Write::Put {
                key: i.bytes()?,
                val: i.bytes()?,
                expires_at: i.u64()?,
                ver: i.u32()?,
            },
            DEL => Write::Del {
                key: i.bytes()?,
                ver: i.u32()?,
            },
            HSET => Write::Hset {
                tb: i.str()?,
                key: i.bytes()?,
                val: i.bytes()?,
                expires_at: i.u64()?,
                ver: i.u32()?,
            },
            HINCRBY => Write::Hincrby {
                tb: i.str()?,
                key: i.bytes()?,
                delta: i.i64()?,
                expires_at: i.u64()?,
                ver: i.u32()?,
            },
            HDEL => Write::Hdel {
                tb: i.str()?,
                key: i.bytes()?,
                ver: i.u32()?,
            },
            SADD => Write::Sadd {
                tb: i.str()?,
                member: i.bytes()?,
                expires_at: i.u64()?,
                ver: i.u32()?,
            },
            SREM => Write::Srem {
                tb: i.str()?,
                member: i.bytes()?,
                ver: i.u32()?,
            },
            ZADD => Write::Zadd {
                tb: i.str()?,
                member: i.bytes()?,
                score: i.i64()?,
                mode: i.mode()?,
                expires_at: i.u64()?,
                ver: i.u32()?,
            },
            ZREM => Write::Zrem {
                tb: i.str()?,
                member: i.bytes()?,
                ver: i.u32()?,
            },
            PURGE => Write::PurgeExpired { max: i.usize()? },
            PURGE_SLOTS => Write::PurgeExpiredSlots {
                start: i.u32()?,
                end: i.u32()?,
                max: i.usize()?,
            },
            CACHE_PUT => Write::CachePut {
                key: i.bytes()?,
                val: i.bytes()?,
                expires_at: i.u64()?,
            },
            CACHE_DEL => Write::CacheDel { key: i.bytes()? },
            CACHE_EXPIRE => Write::CacheExpire {
                key: i.bytes()?,
                expires_at: i.u64()?,
            },
            CACHE_PERSIST => Write::CachePersist { key: i.bytes()? },
            CACHE_APPEND => Write::CacheAppend {
                key: i.bytes()?,
                val: i.bytes()?,
            },
            CACHE_HSET => Write::CacheHset {
                tb: i.str()?,
                key: i.bytes()?,
                val: i.bytes()?,
            },
            CACHE_HDEL => Write::CacheHdel {
                tb: i.str()?,
                key: i.bytes()?,
            },
            CACHE_HINCRBY => Write::CacheHincrby {
                tb: i.str()?,
                key: i.bytes()?,
                delta: i.i64()?,
            },
            CACHE_HINCRBYFLOAT => Write::CacheHincrbyfloat {
                tb: i.str()?,
                key: i.bytes()?,
                delta: f64::from_bits(i.u64()?),
            },
            CACHE_PURGE => Write::CachePurgeExpired { max: i.usize()? },
            _ => return None,
        };
        i.0.is_empty().then_some(Command { now_ms, write })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One command of every kind, with values that exercise the encoding's edges.
    fn every_kind() -> Vec<Command<'static>> {
        let long: &'static [u8] = Box::leak(vec![0xa5u8; 300].into_boxed_slice());
        let writes = [
            Write::Put {
                key: b"k",
                val: long,
                expires_at: 1_700_000_000_123,
                ver: 7,
            },
            Write::Del {
                key: b"",
                ver: u32::MAX,
            },
            Write::Hset {
                tb: "t\u{e9}",
                key: b"f",
                val: b"v",
                expires_at: 0,
                ver: 0,
            },
            Write::Hincrby {
                tb: "h",
                key: b"n",
                delta: i64::MIN,
                expires_at: u64::MAX,
                ver: 127,
            },
            Write::Hdel {
                tb: "h",
                key: b"n",
                ver: 128,
            },
            Write::Sadd {
                tb: "s",
                member: b"m",
                expires_at: 5,
                ver: 16_384,
            },
            Write::Srem {
                tb: "s",
                member: b"m",
                ver: 1,
            },
            Write::Zadd {
                tb: "z",
                member: b"m",
                score: -42,
                mode: ZaddMode::Subtract,
                expires_at: 9,
                ver: 2,
            },
            Write::Zadd {
                tb: "z",
                member: b"m",
                score: i64::MAX,
                mode: ZaddMode::Add,
                expires_at: 0,
                ver: 0,
            },
            Write::Zadd {
                tb: "z",
                member: b"m",
                score: 0,
                mode: ZaddMode::Set,
                expires_at: 0,
                ver: 0,
            },
            Write::Zrem {
                tb: "z",
                member: b"m",
                ver: 3,
            },
            Write::PurgeExpired { max: usize::MAX },
            Write::PurgeExpiredSlots {
                start: 256,
                end: 512,
                max: 1000,
            },
            Write::CachePut {
                key: b"c",
                val: b"",
                expires_at: 77,
            },
            Write::CacheDel { key: b"c" },
            Write::CacheExpire {
                key: b"c",
                expires_at: 1,
            },
            Write::CachePersist { key: b"c" },
            Write::CacheAppend {
                key: b"c",
                val: long,
            },
            Write::CacheHset {
                tb: "ch",
                key: b"f",
                val: b"v",
            },
            Write::CacheHdel {
                tb: "ch",
                key: b"f",
            },
            Write::CacheHincrby {
                tb: "ch",
                key: b"f",
                delta: -1,
            },
            Write::CacheHincrbyfloat {
                tb: "ch",
                key: b"f",
                delta: -0.125,
            },
            Write::CachePurgeExpired { max: 0 },
        ];
        writes
            .into_iter()
            .enumerate()
            .map(|(i, write)| Command {
                now_ms: 1_700_000_000_000 + i as u64,
                write,
            })
            .collect()
    }

    fn encoded(c: &Command<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        c.encode(&mut out);
        out
    }

    #[test]
    fn every_kind_round_trips() {
        let all = every_kind();
        // Every variant is in the list (the tags are distinct per variant).
        let mut tags: Vec<u8> = all.iter().map(|c| encoded(c)[1]).collect();
        tags.dedup();
        assert_eq!(tags.len(), 21, "one tag per write");
        for c in &all {
            let bytes = encoded(c);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(Command::decode(&bytes).unwrap(), *c, "{c:?}");
        }
        // Encoding appends: two commands one after the other stay apart.
        let mut two = encoded(&all[0]);
        let first = two.len();
        all[1].encode(&mut two);
        assert_eq!(Command::decode(&two[first..]).unwrap(), all[1]);
    }

    #[test]
    fn a_nan_delta_keeps_its_bits() {
        let c = Command {
            now_ms: 0,
            write: Write::CacheHincrbyfloat {
                tb: "t",
                key: b"k",
                delta: f64::NAN,
            },
        };
        match Command::decode(&encoded(&c)).unwrap().write {
            Write::CacheHincrbyfloat { delta, .. } => {
                assert_eq!(delta.to_bits(), f64::NAN.to_bits())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_refused_without_a_panic() {
        let bad = |b: &[u8]| matches!(Command::decode(b), Err(StorageError::Invalid(_)));
        assert!(bad(&[]));
        for c in every_kind() {
            let bytes = encoded(&c);
            // Every cut is refused, and so is a byte more.
            for cut in 0..bytes.len() {
                assert!(bad(&bytes[..cut]), "{c:?} cut at {cut}");
            }
            let mut more = bytes.clone();
            more.push(0);
            assert!(bad(&more), "{c:?} with a trailing byte");
            let mut other_version = bytes.clone();
            other_version[0] = VERSION + 1;
            assert!(bad(&other_version));
        }
        let mut unknown = encoded(&every_kind()[0]);
        unknown[1] = 99;
        assert!(bad(&unknown));
        // A table name that is not UTF-8.
        let mut not_utf8 = encoded(&Command {
            now_ms: 0,
            write: Write::CacheHdel {
                tb: "ab",
                key: b"k",
            },
        });
        not_utf8[11] = 0xff;
        assert!(bad(&not_utf8));
        // A length far past the end, and a varint that never ends or overflows.
        let mut head = vec![VERSION, CACHE_DEL];
        head.extend_from_slice(&0u64.to_le_bytes());
        let mut huge = head.clone();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(bad(&huge));
        let mut endless = head.clone();
        endless.extend_from_slice(&[0x80; 12]);
        assert!(bad(&endless));
        let mut overflow = head.clone();
        overflow.extend_from_slice(&[0xff; 9]);
        overflow.push(0x02);
        assert!(bad(&overflow));
        // A bad zadd mode.
        let mut zadd = encoded(&every_kind()[7]);
        let mode_at = zadd.len() - 1 - 8 - 1;
        zadd[mode_at] = 3;
        assert!(bad(&zadd));
        // Random bytes: refused or decoded, never a panic; what decodes re-encodes the same.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000 {
            let len = (round % 40) as usize;
            let mut b = Vec::with_capacity(len + 2);
            b.push(VERSION);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            if let Ok(c) = Command::decode(&b) {
                assert_eq!(encoded(&c), b);
            }
        }
    }
}
