//! Values: the variable tail every value shares (the full key of a long key, then the
//! payload) and the persistent record around it (version, expiry), with the arithmetic of
//! versions and expiries.

use super::{corrupt, u32_at, u64_at, MAX_VER, REC_HEAD};
use crate::Result;

// ---- values

/// `[klen u32, key]` (long keys only) then the payload: the variable part of every value.
pub(crate) struct Tail<'a> {
    pub full: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

pub(crate) fn tail_len(full: Option<&[u8]>, payload: usize) -> usize {
    full.map_or(0, |k| 4 + k.len()) + payload
}

/// Fills `out` (exactly [`tail_len`] bytes).
pub(crate) fn write_tail(out: &mut [u8], full: Option<&[u8]>, payload: &[u8]) {
    let mut at = 0;
    if let Some(k) = full {
        out[..4].copy_from_slice(&(k.len() as u32).to_le_bytes());
        out[4..4 + k.len()].copy_from_slice(k);
        at = 4 + k.len();
    }
    out[at..at + payload.len()].copy_from_slice(payload);
}

pub(crate) fn read_tail(v: &[u8], long: bool) -> Result<Tail<'_>> {
    if !long {
        return Ok(Tail {
            full: None,
            payload: v,
        });
    }
    let klen = u32_at(v, 0)? as usize;
    let full = v.get(4..4 + klen).ok_or_else(corrupt)?;
    let payload = v.get(4 + klen..).ok_or_else(corrupt)?;
    Ok(Tail {
        full: Some(full),
        payload,
    })
}

/// A decoded persistent record (or `zidx` value, whose payload is empty).
pub(crate) struct Rec<'a> {
    pub ver: u32,
    pub exp: u64,
    pub full: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl<'a> Rec<'a> {
    /// The real key: the full key for long keys, else the ekey itself.
    pub fn key(&self, ek: &'a [u8]) -> &'a [u8] {
        self.full.unwrap_or(ek)
    }
}

pub(crate) fn rec_len(full: Option<&[u8]>, payload: usize) -> usize {
    REC_HEAD + tail_len(full, payload)
}

pub(crate) fn write_rec(out: &mut [u8], ver: u32, exp: u64, full: Option<&[u8]>, payload: &[u8]) {
    out[..4].copy_from_slice(&ver.to_le_bytes());
    out[4..12].copy_from_slice(&exp.to_le_bytes());
    write_tail(&mut out[REC_HEAD..], full, payload);
}

pub(crate) fn read_rec(v: &[u8], long: bool) -> Result<Rec<'_>> {
    let ver = u32_at(v, 0)?;
    let exp = u64_at(v, 4)?;
    let t = read_tail(v.get(REC_HEAD..).ok_or_else(corrupt)?, long)?;
    Ok(Rec {
        ver,
        exp,
        full: t.full,
        payload: t.payload,
    })
}

// ---- versions and time

/// Live at `now` (expiry 0 = never expires).
pub(crate) fn live(exp: u64, now: u64) -> bool {
    exp == 0 || now < exp
}

/// Expiry of a write made at `now` with `ttl` seconds (0 = none).
pub(crate) fn expiry(ttl: u32, now: u64) -> u64 {
    if ttl == 0 {
        0
    } else {
        now.saturating_add(ttl as u64 * 1000)
    }
}

/// Version after a write; `current` 0 = the record is (logically) new.
pub(crate) fn next_ver(current: u32) -> u32 {
    if current == 0 || current >= MAX_VER {
        1
    } else {
        current + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::full_if_long;

    #[test]
    fn records_round_trip() {
        let key = vec![7u8; 500];
        let full = full_if_long(&key);
        let mut buf = vec![0u8; rec_len(full, 3)];
        write_rec(&mut buf, 9, 1234, full, b"abc");
        let r = read_rec(&buf, true).ok();
        let r = r.as_ref();
        assert_eq!(
            r.map(|r| (r.ver, r.exp, r.payload)),
            Some((9, 1234, &b"abc"[..]))
        );
        assert_eq!(r.and_then(|r| r.full), Some(&key[..]));
        assert!(read_rec(&buf[..10], false).is_err());
        assert!(read_rec(&buf[..20], true).is_err());
    }

    #[test]
    fn versions_wrap() {
        assert_eq!(next_ver(0), 1);
        assert_eq!(next_ver(1), 2);
        assert_eq!(next_ver(MAX_VER), 1);
    }
}
