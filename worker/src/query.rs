//! Query strings as the specs decode them: `name=value` pairs joined by `&`, `%XX` is any byte,
//! `+` is a space, a malformed escape fails the whole request (`400`), the first occurrence of a
//! repeated name wins, and an empty value (or no `=`) counts as absent. Plus the strict number
//! and boolean parsers both APIs share.

/// The decoded parameters of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Names that appeared with an empty value or without `=` (mq's `/do_post?token=` needs to
    /// know a name was present even when empty).
    present_empty: Vec<Vec<u8>>,
}

/// A malformed `%` escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEscape;

impl Params {
    /// Decodes a raw query string.
    pub fn parse(raw: &[u8]) -> Result<Params, BadEscape> {
        let mut params = Params::default();
        for piece in raw.split(|&b| b == b'&') {
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(eq) => (&piece[..eq], &piece[eq + 1..]),
                None => (piece, &b""[..]),
            };
            let name = decode(name)?;
            let value = decode(value)?;
            if params.contains_name(&name) {
                continue;
            }
            if value.is_empty() {
                params.present_empty.push(name);
            } else {
                params.pairs.push((name, value));
            }
        }
        Ok(params)
    }

    fn contains_name(&self, name: &[u8]) -> bool {
        self.pairs.iter().any(|(n, _)| n == name) || self.present_empty.iter().any(|n| n == name)
    }

    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The non-empty pairs, in query order (each name once: its first value).
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    /// True when `name` appeared at all, even with an empty value.
    pub fn has(&self, name: &str) -> bool {
        self.contains_name(name.as_bytes())
    }
}

/// Percent-encodes one name or value for a query (every byte but the unreserved ones), so that
/// [`decode`] gives it back.
pub fn encode(raw: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in raw {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

/// Percent-decodes one name or value (`+` is a space).
pub fn decode(raw: &[u8]) -> Result<Vec<u8>, BadEscape> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&b| hex(b)).ok_or(BadEscape)?;
                let lo = raw.get(i + 2).and_then(|&b| hex(b)).ok_or(BadEscape)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// An unsigned decimal: digits only (no sign, spaces or junk), at most 19 of them.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

/// A signed 64-bit decimal: an optional `-`, then digits.
pub fn parse_i64(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Accumulate negatively so i64::MIN parses.
    let mut n: i64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_sub((d - b'0') as i64)?;
    }
    if neg {
        Some(n)
    } else {
        n.checked_neg()
    }
}

/// `true`/`1` or `false`/`0` (kv mode is case-sensitive; mq mode also takes any case of
/// `true`/`false`, see [`parse_bool_any_case`]).
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"true" | b"1" => Some(true),
        b"false" | b"0" => Some(false),
        _ => None,
    }
}

/// mq mode's booleans: `true`, `1`, `false`, `0`, with `true`/`false` in any case.
pub fn parse_bool_any_case(v: &[u8]) -> Option<bool> {
    if v.eq_ignore_ascii_case(b"true") || v == b"1" {
        Some(true)
    } else if v.eq_ignore_ascii_case(b"false") || v == b"0" {
        Some(false)
    } else {
        None
    }
}

/// A table or queue name: 1..=64 bytes of `A-Z a-z 0-9 _ : .`.
pub fn valid_name(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        let p = Params::parse(b"key=a%20b+c%2B&val=%00%ff").unwrap();
        assert_eq!(p.get("key"), Some(&b"a b c+"[..]));
        assert_eq!(p.get("val"), Some(&[0u8, 0xff][..]));
    }

    #[test]
    fn bad_escapes_fail() {
        for bad in [&b"key=%G1"[..], b"key=%4", b"key=%", b"k%zz=1"] {
            assert_eq!(Params::parse(bad), Err(BadEscape));
        }
    }

    #[test]
    fn first_occurrence_wins_and_empty_is_absent() {
        let p = Params::parse(b"key=a&key=b&val=&flag&x=1").unwrap();
        assert_eq!(p.get("key"), Some(&b"a"[..]));
        assert_eq!(p.get("val"), None);
        assert!(p.has("val"));
        assert!(p.has("flag"));
        assert_eq!(p.get("flag"), None);
        assert!(!p.has("nope"));
        // An empty first occurrence still wins over a later value.
        let p = Params::parse(b"key=&key=b").unwrap();
        assert_eq!(p.get("key"), None);
    }

    #[test]
    fn strict_numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), None); // 20 digits
        assert_eq!(
            parse_u64(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [&b""[..], b"+1", b"-1", b" 1", b"1 ", b"1.0", b"1e3", b"abc"] {
            assert_eq!(parse_u64(bad), None);
        }
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"--1"), None);
        assert_eq!(parse_i64(b"+5"), None);
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(b"true"), Some(true));
        assert_eq!(parse_bool(b"0"), Some(false));
        assert_eq!(parse_bool(b"TRUE"), None);
        assert_eq!(parse_bool(b"yes"), None);
        assert_eq!(parse_bool_any_case(b"TRUE"), Some(true));
        assert_eq!(parse_bool_any_case(b"False"), Some(false));
        assert_eq!(parse_bool_any_case(b"no"), None);
    }

    #[test]
    fn names() {
        assert!(valid_name(b"a:b.c_D9"));
        assert!(!valid_name(b""));
        assert!(!valid_name(b"no spaces"));
        assert!(!valid_name(&[b'a'; 65]));
        assert!(valid_name(&[b'a'; 64]));
    }
}
