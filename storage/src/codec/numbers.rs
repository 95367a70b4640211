//! Numbers stored as text, read by the rules of `hincrby` and `hincrbyfloat`.

// ---- numbers stored as text

/// An optional `-` then digits, fitting i64 (`hincrby`'s rule for stored values).
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse::<i64>().ok()
}

/// `-`? digits (`.` digits)? ([eE] [+-]? digits)?, finite (`hincrbyfloat`'s rule).
pub(crate) fn parse_f64(b: &[u8]) -> Option<f64> {
    fn digits(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    }
    let mut i = usize::from(b.first() == Some(&b'-'));
    let j = digits(b, i);
    if j == i {
        return None;
    }
    i = j;
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return None;
        }
        i = j;
    }
    if i != b.len() {
        return None;
    }
    let f = std::str::from_utf8(b).ok()?.parse::<f64>().ok()?;
    f.is_finite().then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_by_the_spec_rules() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"007"), Some(7));
        for bad in [&b""[..], b"-", b"+1", b"1.5", b" 1", b"9223372036854775808"] {
            assert_eq!(parse_i64(bad), None);
        }
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-2e3"), Some(-2000.0));
        assert_eq!(parse_f64(b"1E+2"), Some(100.0));
        for bad in [
            &b""[..],
            b".5",
            b"1.",
            b"1e",
            b"inf",
            b"NaN",
            b"1e400",
            b"+1",
            b"0x1",
        ] {
            assert_eq!(parse_f64(bad), None);
        }
    }
}
