//! Keys as LMDB stores them: long keys cut to a prefix and a hash (see the layout notes in
//! `mod.rs`), the composite keys of table members and the score index, and the keys of the two
//! expiry indexes, all built so that bytewise order is the order listings and purges need.

use std::borrow::Cow;

use super::{corrupt, u64_be_at, LONG_EKEY, LONG_KEY};
use crate::Result;

// ---- long keys

/// MurmurHash3 x64 128 (seed 0), hand-written: stable across Rust releases, unlike std's
/// hashers, which matters because the hash is part of the on-disk key.
pub(crate) fn hash128(data: &[u8]) -> [u8; 16] {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        let k1 = u64::from_le_bytes(lo)
            .wrapping_mul(C1)
            .rotate_left(31)
            .wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        let k2 = u64::from_le_bytes(hi)
            .wrapping_mul(C2)
            .rotate_left(33)
            .wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &b) in tail.iter().enumerate() {
        if i < 8 {
            k1 ^= (b as u64) << (i * 8);
        } else {
            k2 ^= (b as u64) << ((i - 8) * 8);
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    h1 ^= data.len() as u64;
    h2 ^= data.len() as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&h1.to_be_bytes());
    out[8..].copy_from_slice(&h2.to_be_bytes());
    out
}

/// The key as LMDB stores it (see the layout notes of `codec`).
pub(crate) fn ekey(key: &[u8]) -> Cow<'_, [u8]> {
    match key.get(..LONG_KEY) {
        Some(prefix) if key.len() > LONG_KEY => {
            let mut v = Vec::with_capacity(LONG_EKEY);
            v.extend_from_slice(prefix);
            v.extend_from_slice(&hash128(key));
            Cow::Owned(v)
        }
        _ => Cow::Borrowed(key),
    }
}

/// Whether an encoded key stands for a long key (short keys are never longer than 400 bytes).
pub(crate) fn is_long(ekey: &[u8]) -> bool {
    ekey.len() == LONG_EKEY
}

/// The full key kept in the value when `key` is long, for [`write_tail`](super::write_tail).
pub(crate) fn full_if_long(key: &[u8]) -> Option<&[u8]> {
    if key.len() > LONG_KEY {
        Some(key)
    } else {
        None
    }
}

// ---- composite keys

/// `table 0x00`: every member key of a table starts with it.
pub(crate) fn table_prefix(tb: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tb.len() + 1);
    v.extend_from_slice(tb);
    v.push(0);
    v
}

pub(crate) fn member_key(tb: &[u8], ek: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tb.len() + 1 + ek.len());
    v.extend_from_slice(tb);
    v.push(0);
    v.extend_from_slice(ek);
    v
}

/// Splits a member key back into table name and ekey.
pub(crate) fn split_member_key(mkey: &[u8]) -> Result<(&[u8], &[u8])> {
    let pos = mkey.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
    Ok((&mkey[..pos], &mkey[pos + 1..]))
}

/// Scores as 8 bytes whose bytewise order is the numeric order (big-endian, sign bit flipped).
pub(crate) fn score_bytes(score: i64) -> [u8; 8] {
    ((score as u64) ^ (1u64 << 63)).to_be_bytes()
}

pub(crate) fn score_from_bytes(b: &[u8]) -> Result<i64> {
    Ok((u64_be_at(b, 0)? ^ (1u64 << 63)) as i64)
}

pub(crate) fn zidx_key(tb: &[u8], score: i64, ek: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tb.len() + 9 + ek.len());
    v.extend_from_slice(tb);
    v.push(0);
    v.extend_from_slice(&score_bytes(score));
    v.extend_from_slice(ek);
    v
}

/// `exp` key: expiry big-endian (so the index is in time order), kind, reference.
pub(crate) fn exp_key(exp: u64, kind: u8, reference: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + reference.len());
    v.extend_from_slice(&exp.to_be_bytes());
    v.push(kind);
    v.extend_from_slice(reference);
    v
}

/// `cexp` key: expiry big-endian, ekey.
pub(crate) fn cexp_key(exp: u64, ek: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + ek.len());
    v.extend_from_slice(&exp.to_be_bytes());
    v.extend_from_slice(ek);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(hash128(b""), [0u8; 16]);
        // mmh3.hash64("hello") = (-3758069500696749310, 6565844092913065241)
        let h = hash128(b"hello");
        assert_eq!(&h[..8], &0xcbd8_a7b3_41bd_9b02u64.to_be_bytes());
        assert_eq!(&h[8..], &0x5b1e_906a_48ae_1d19u64.to_be_bytes());
    }

    #[test]
    fn score_bytes_sort_numerically() {
        let scores = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in scores.windows(2) {
            assert!(score_bytes(w[0]) < score_bytes(w[1]));
        }
        for s in scores {
            assert_eq!(score_from_bytes(&score_bytes(s)).ok(), Some(s));
        }
    }

    #[test]
    fn ekeys_keep_order_outside_long_runs() {
        let a = vec![b'a'; 400];
        let mut b = a.clone();
        b.push(b'x');
        let mut c = vec![b'a'; 399];
        c.push(b'b');
        assert_eq!(ekey(&a).len(), 400);
        assert_eq!(ekey(&b).len(), LONG_EKEY);
        assert!(ekey(&a) < ekey(&b));
        assert!(ekey(&b) < ekey(&c));
        assert!(is_long(&ekey(&b)) && !is_long(&ekey(&a)));
    }
}
