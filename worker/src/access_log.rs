//! `access_log PATH`: one line per request in nginx's "combined" format plus the request time
//! in seconds, `remote - user [time] "request" status bytes "referer" "user-agent" time`.
//! Lines of a loop pass are written with one `write` at the end of the pass (O_APPEND, so the
//! workers' lines never interleave), and USR1 reopens the file.

use crate::http::AccessHead;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// What a reply leaves for the access log until its time is known.
#[derive(Debug)]
pub struct Entry {
    pub remote: Option<SocketAddr>,
    pub user: Vec<u8>,
    pub head: Box<AccessHead>,
}

pub struct AccessLog {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// The formatted local time of `cached_second`.
    cached_second: i64,
    cached_time: String,
}

impl AccessLog {
    pub fn open(path: PathBuf) -> std::io::Result<AccessLog> {
        let file = open(&path)?;
        Ok(AccessLog {
            path,
            file,
            buf: Vec::with_capacity(4096),
            cached_second: -1,
            cached_time: String::new(),
        })
    }

    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.flush();
        self.file = open(&self.path)?;
        Ok(())
    }

    /// Queues one line.
    pub fn record(&mut self, entry: &Entry, status: u16, body_bytes: usize, took: Duration) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if now != self.cached_second {
            self.cached_second = now;
            self.cached_time = local_time(now);
        }
        let b = &mut self.buf;
        match entry.remote {
            Some(addr) => {
                let _ = write!(b, "{}", addr.ip());
            }
            None => b.push(b'-'),
        }
        b.extend_from_slice(b" - ");
        escaped(b, &entry.user);
        let _ = write!(b, " [{}] \"", self.cached_time);
        escaped(b, &entry.head.request_line);
        let _ = write!(b, "\" {status} {body_bytes} \"");
        escaped(b, &entry.head.referer);
        b.extend_from_slice(b"\" \"");
        escaped(b, &entry.head.user_agent);
        let _ = writeln!(b, "\" {}.{:03}", took.as_secs(), took.subsec_millis());
    }

    /// Writes the queued lines.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            log::error!(
                "could not write the access log {}: {e}",
                self.path.display()
            );
        }
        self.buf.clear();
    }
}

fn open(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
}

/// Like nginx: `"` `\` and bytes outside printable ASCII as `\xHH`; empty as `-`.
fn escaped(out: &mut Vec<u8>, v: &[u8]) {
    if v.is_empty() {
        out.push(b'-');
        return;
    }
    for &c in v {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            let _ = write!(out, "\\x{c:02X}");
        } else {
            out.push(c);
        }
    }
}

/// `24/Nov/2026:06:42:22 +0000` in the local time zone.
fn local_time(secs: i64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value; localtime_r writes into it and reads `t`,
    // both valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return "01/Jan/1970:00:00:00 +0000".to_string();
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let off = tm.tm_gmtoff / 60;
    let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        tm.tm_mday,
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 60,
        off % 60
    )
}

/// The user name of a basic `Authorization` header, for the log (not checked here).
pub fn user_of(authorization: Option<&[u8]>) -> Vec<u8> {
    use base64::Engine as _;
    let Some(v) = authorization else {
        return Vec::new();
    };
    let Some(b64) = v
        .get(6..)
        .filter(|_| v[..6].eq_ignore_ascii_case(b"basic "))
    else {
        return Vec::new();
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim_ascii()) else {
        return Vec::new();
    };
    let end = decoded
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(decoded.len());
    decoded[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_format_line() {
        let dir = std::env::temp_dir().join(format!("huststore-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let mut log = AccessLog::open(path.clone()).unwrap();
        let entry = Entry {
            remote: Some("127.0.0.1:5555".parse().unwrap()),
            user: b"alice".to_vec(),
            head: Box::new(AccessHead {
                request_line: b"GET /get?key=\"x\" HTTP/1.1".to_vec(),
                referer: Vec::new(),
                user_agent: b"curl/8".to_vec(),
            }),
        };
        log.record(&entry, 200, 2, Duration::from_millis(1500));
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("127.0.0.1 - alice ["), "{text}");
        assert!(
            text.ends_with(
                "] \"GET /get?key=\\x22x\\x22 HTTP/1.1\" 200 2 \"-\" \"curl/8\" 1.500\n"
            ),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn user_names_from_basic_auth() {
        assert_eq!(user_of(Some(b"Basic YWxpY2U6d29uZGVy")), b"alice");
        assert_eq!(user_of(Some(b"Bearer x")), b"");
        assert_eq!(user_of(None), b"");
    }
}
