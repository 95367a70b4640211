//! The answers cluster mode composes for a client out of other nodes' (`cluster.md` §4): a
//! forwarded read's relayed reply, and the `*2` reads' comparison of the replicas' plain
//! answers, in the original's shape (`kv-api.md` §3: `Version1`.., `Val-Offset`). Pure.

use super::super::cluster_error;
use crate::http::{Response, APPLICATION_JSON, TEXT_PLAIN};

/// The headers of a relayed answer kept (others are dropped: a reply's header names are
/// static). `Version1`.. are the `*2` reads' own.
const RELAYED: &[&str] = &[
    "Version",
    "VerError",
    "Keys",
    "TotalCount",
    "Retry-After",
    "Cluster-Error",
    "Val-Offset",
    "WWW-Authenticate",
    "Allow",
];
const VERSION_N: &[&str] = &[
    "Version1",
    "Version2",
    "Version3",
    "Version4",
    "Version5",
    "Version6",
    "Version7",
    "Version8",
    "Version9",
    "Version10",
    "Version11",
    "Version12",
    "Version13",
    "Version14",
    "Version15",
    "Version16",
];

/// Which `*2` read: they differ only when the versions differ and the values agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// `/get2`, `/hget2`, `/zscore2`: `200` with `Version1`.. .
    Value,
    /// `/sismember2`: `409` with `Version1`.. .
    Member,
}

/// One replica's plain answer, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plain {
    pub(super) status: u16,
    pub(super) version: Option<String>,
    pub(super) body: Vec<u8>,
}

pub(super) fn unavailable(why: &str) -> Response {
    cluster_error(503, why).header("Retry-After", 1)
}

pub(super) fn plain_of(r: Response) -> Plain {
    let version = r
        .headers
        .iter()
        .find(|(n, _)| *n == "Version")
        .map(|(_, v)| v.clone());
    Plain {
        status: r.status,
        version,
        body: r.body,
    }
}

/// A helper's `Reply` as the plain answer compared.
pub(super) fn plain_of_reply(status: u16, headers: &[(String, String)], body: Vec<u8>) -> Plain {
    let version = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Version"))
        .map(|(_, v)| v.clone());
    Plain {
        status,
        version,
        body,
    }
}

/// The `*2` answer of the replicas' plain answers, in group order (`kv-api.md` §3): the
/// plain answer when all agree; `200` (`Value`) or `409` (`Member`) with `Version1`.. when
/// only the versions differ; `409` with the values concatenated and `Val-Offset` (where each
/// value after the first starts, comma-separated) when the values differ; `503` when a
/// replica answered something other than a read's answer.
pub(super) fn compose(kind: Compare, answers: &[Plain]) -> Response {
    if let Some(odd) = answers
        .iter()
        .find(|a| !matches!(a.status, 200 | 404 | 412))
    {
        return unavailable(&format!("a replica answered {}", odd.status));
    }
    let Some(first) = answers.first() else {
        return unavailable("the group has no member");
    };
    let with_versions = |mut r: Response| {
        for (a, name) in answers.iter().zip(VERSION_N) {
            r = r.header(name, a.version.clone().unwrap_or_else(|| "0".into()));
        }
        r
    };
    let statuses_agree = answers.iter().all(|a| a.status == first.status);
    let values_agree = statuses_agree && answers.iter().all(|a| a.body == first.body);
    let versions_agree = answers.iter().all(|a| a.version == first.version);
    let single = |a: &Plain| {
        let mut r = if a.body.is_empty() {
            Response::empty(a.status)
        } else {
            Response::with_body(a.status, TEXT_PLAIN, a.body.clone())
        };
        if let Some(v) = &a.version {
            r = r.header("Version", v);
        }
        r
    };
    if values_agree && versions_agree {
        return single(first);
    }
    if values_agree {
        let status = match kind {
            Compare::Value => first.status,
            Compare::Member => 409,
        };
        let mut r = single(first);
        r.status = status;
        r.headers.clear();
        return with_versions(r);
    }
    let mut body = Vec::new();
    let mut offsets = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            offsets.push(body.len().to_string());
        }
        body.extend_from_slice(&a.body);
    }
    let mut r = Response::with_body(409, TEXT_PLAIN, body).header("Val-Offset", offsets.join(","));
    if versions_agree {
        r = r.header(
            "Version",
            first.version.clone().unwrap_or_else(|| "0".into()),
        );
    } else {
        r = with_versions(r);
    }
    r
}

/// A helper's `Reply` relayed as this node's answer.
pub(super) fn relay(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Response {
    let mut r = Response::empty(status);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-type") {
            let v = value.to_ascii_lowercase();
            r.content_type = Some(if v.starts_with("application/json") {
                APPLICATION_JSON
            } else if v.starts_with("text/plain; version=0.0.4") {
                "text/plain; version=0.0.4"
            } else {
                TEXT_PLAIN
            });
        } else if let Some(known) = RELAYED
            .iter()
            .chain(VERSION_N)
            .find(|k| k.eq_ignore_ascii_case(&name))
        {
            r = r.header(known, value);
        }
    }
    if body.is_empty() {
        r.content_type = None;
    } else if r.content_type.is_none() {
        r.content_type = Some(TEXT_PLAIN);
    }
    r.body = body;
    r
}
