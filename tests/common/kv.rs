//! Checks shared by the kv-mode test files: exact contract headers and bodies, percent- and
//! base64-encoding, and request shorthands.

use super::{Client, Response};

/// Headers the contract defines: a response must carry exactly those a test lists (plus
/// `Content-Type: text/plain` when the body is non-empty, unless listed otherwise).
pub const CONTRACT: &[&str] = &[
    "Version",
    "VerError",
    "Content-Type",
    "Keys",
    "TotalCount",
    "Allow",
    "WWW-Authenticate",
    "Val-Offset",
    "Version1",
    "Version2",
    "Sync",
    "Fail",
];

/// Asserts status, the contract headers (exactly `headers`), `Content-Length` and body.
#[track_caller]
pub fn expect(r: &Response, status: u16, headers: &[(&str, &str)], body: impl AsRef<[u8]>) {
    let body = body.as_ref();
    assert_eq!(
        r.status,
        status,
        "status (body {:?}, headers {:?})",
        r.text(),
        r.headers
    );
    for name in CONTRACT {
        let mut want = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v);
        if *name == "Content-Type" && want.is_none() && !body.is_empty() {
            want = Some("text/plain");
        }
        let count = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count();
        assert!(count <= 1, "{name} repeated: {:?}", r.headers);
        assert_eq!(r.header(name), want, "header {name} of {:?}", r.headers);
    }
    let len = body.len().to_string();
    assert_eq!(
        r.header("Content-Length"),
        Some(len.as_str()),
        "Content-Length"
    );
    assert_eq!(
        r.body,
        body,
        "body {:?} != {:?}",
        r.text(),
        String::from_utf8_lossy(body)
    );
}

/// Percent-encodes every byte but unreserved ones.
pub fn pct(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn g(c: &mut Client, target: &str) -> Response {
    c.send("GET", target, &[], b"")
}

pub fn post(c: &mut Client, target: &str, body: &[u8]) -> Response {
    c.send("POST", target, &[], body)
}

pub const W1: &[(&str, &str)] = &[("Version", "1"), ("VerError", "false")];
pub const R1: &[(&str, &str)] = &[("Version", "1")];
pub const R0: &[(&str, &str)] = &[("Version", "0")];
pub const W0: &[(&str, &str)] = &[("Version", "0"), ("VerError", "false")];
