//! The value parsers: flags, sizes, times, listen addresses, plain numbers and paths, each a pure
//! function from the text of one argument to a value (`None`: not that kind of value). They know
//! nothing of directives or of the messages a bad value gets.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest time the conf accepts: 2^31-1 seconds (about 68 years), so that adding it to
/// a clock reading never overflows.
const MAX_TIME_MS: u64 = (i32::MAX as u64) * 1000;

/// `dir/s` (or `s` when absolute), with `.` and repeated slashes dropped; `..` is kept, since
/// resolving it lexically is wrong across symlinks.
pub(super) fn resolve(dir: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    joined.components().collect()
}

/// `on` or `off`, lowercase only: unlike nginx, `ON` is refused (the conf tests say so).
pub(super) fn parse_flag(s: &str) -> Option<bool> {
    match s {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Plain ASCII digits that fit in a u64 (no sign, no spaces, no `_`).
pub(super) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `1024`, `64k`, `64m`, `2g` (case-insensitive, powers of 1024) in bytes.
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let (num, unit) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    parse_digits(num)?.checked_mul(unit)
}

/// `1500ms`, `30s`, `2m`, `1h`, `1d`, or a bare number of seconds; at most [`MAX_TIME_MS`].
pub(super) fn parse_time(s: &str) -> Option<Duration> {
    let (num, unit_ms) = if let Some(num) = s.strip_suffix("ms") {
        (num, 1u64)
    } else {
        match s.as_bytes().last()? {
            b's' => (&s[..s.len() - 1], 1000),
            b'm' => (&s[..s.len() - 1], 60 * 1000),
            b'h' => (&s[..s.len() - 1], 3600 * 1000),
            b'd' => (&s[..s.len() - 1], 86400 * 1000),
            _ => (s, 1000),
        }
    };
    let ms = parse_digits(num)?.checked_mul(unit_ms)?;
    (ms <= MAX_TIME_MS).then(|| Duration::from_millis(ms))
}

/// `127.0.0.1:8082`, `[::1]:8082`, `*:8082` (any IPv4), `localhost:8082` (127.0.0.1), or a bare
/// port `8082` (any IPv4). Port 0 is refused: clients could not know the port.
pub(super) fn parse_listen(s: &str) -> Option<SocketAddr> {
    let port = |p: &str| {
        parse_digits(p)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, p) = rest.split_once("]:")?;
        let ip: Ipv6Addr = host.parse().ok()?;
        return Some(SocketAddr::new(ip.into(), port(p)?));
    }
    match s.rsplit_once(':') {
        None => Some(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port(s)?)),
        Some((host, p)) => {
            let ip = if host == "*" {
                Ipv4Addr::UNSPECIFIED
            } else if host.eq_ignore_ascii_case("localhost") {
                Ipv4Addr::LOCALHOST
            } else {
                host.parse().ok()?
            };
            Some(SocketAddr::new(ip.into(), port(p)?))
        }
    }
}
