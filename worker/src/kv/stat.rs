//! Statistics (`kv-api.md` §7): `/stat`, `/stat_all`, `/file_count`, and their JSON.

use super::replicated::{gate, gather};
use super::{group_of, peer, plain_error, table, Check, KvService};
use crate::http::Response;
use crate::service::{Pass, Request};
use cluster::placement::Target;
use std::fmt::Write as _;
use storage::{TableStat, Totals, Usage};

/// The totals, or one table with `tb`. In a cluster a table is read in its group (and
/// `peer=g` of another group has no such table: `404`); the totals are group `g`'s with
/// `peer=g`, else the whole cluster's, gathered from every group (`cluster.md` §5).
pub fn stat(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let only = peer(kv, req)?;
    let mut out = String::new();
    match req.params.get("tb") {
        Some(_) => {
            let tb = table(req)?;
            let group = group_of(kv, Target::Table(tb));
            if only.is_some_and(|g| g != group) {
                return Ok(Response::empty(404));
            }
            gate(kv, req, "/stat", group, false)?;
            match pass.batch.table_stat(tb, pass.now_ms) {
                Ok(t) => table_json(&mut out, &t),
                Err(e) => return Ok(plain_error(e)),
            }
        }
        None => {
            let part = match cluster_part(kv, req, pass, only, false)? {
                Some(Ok(part)) => Ok(part.totals),
                Some(Err(e)) => Err(e),
                None => pass.batch.totals(),
            };
            match part {
                Ok(t) => totals_json(&mut out, &t),
                Err(e) => return Ok(plain_error(e)),
            }
        }
    }
    Ok(Response::text(out))
}

/// The totals and every table; in a cluster group `g`'s with `peer=g`, else the whole
/// cluster's (the tables of every group, by name).
pub fn stat_all(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let only = peer(kv, req)?;
    let part = match cluster_part(kv, req, pass, only, true)? {
        Some(part) => part,
        None => {
            let b = &mut *pass.batch;
            b.totals().and_then(|totals| {
                Ok(Part {
                    totals,
                    tables: b.all_tables(pass.now_ms)?,
                })
            })
        }
    };
    match part {
        Ok(part) => Ok(render(true, std::slice::from_ref(&part))),
        Err(e) => Ok(plain_error(e)),
    }
}

/// Cluster mode: group `g`'s part with `peer=g` (read here, or forwarded), or the whole
/// cluster's, gathered (`Err`: the request parks). `None` on a single node.
fn cluster_part(
    kv: &mut KvService,
    req: &Request,
    pass: &mut Pass,
    only: Option<u32>,
    all: bool,
) -> Check<Option<storage::Result<Part>>> {
    let Some(c) = kv.cluster.as_ref() else {
        return Ok(None);
    };
    let Some(g) = only else {
        gather(kv, all)?;
        return Ok(None);
    };
    let slots = c.slots_of(g);
    let path = if all { "/stat_all" } else { "/stat" };
    gate(kv, req, path, g, false)?;
    let c = kv.cluster.as_ref().ok_or_else(|| Response::empty(500))?;
    Ok(Some(local_part(
        pass,
        slots,
        |t| c.group_of(Target::Table(t)) == g,
        all,
    )))
}

/// One group's part of the statistics: its slots' totals and (`all`) its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub totals: Totals,
    pub tables: Vec<TableStat>,
}

/// This node's part of the slots `slots`, with the tables `mine` says are of them.
pub(super) fn local_part(
    pass: &mut Pass,
    slots: std::ops::Range<u32>,
    mine: impl Fn(&str) -> bool,
    all: bool,
) -> storage::Result<Part> {
    let totals = pass.batch.totals_of_slots(slots)?;
    let tables = if all {
        let mut t = pass.batch.all_tables(pass.now_ms)?;
        t.retain(|t| mine(&t.name));
        t
    } else {
        Vec::new()
    };
    Ok(Part { totals, tables })
}

/// A part as another node answered it (`/stat` or, with `all`, `/stat_all`); `None` for a
/// body that is not of that shape.
pub(super) fn parse_part(body: &[u8], all: bool) -> Option<Part> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body).ok()?;
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let usage = |v: &Value| {
        Some(Usage {
            count: n(v, "count")?,
            size: n(v, "size")?,
            capacity: n(v, "capacity")?,
        })
    };
    let totals_of = |v: &Value| {
        let t = v.get("TOTALIZE")?;
        Some(Totals {
            kv: usage(t.get("KVPAIR")?)?,
            hash: usage(t.get("HASHTABLE")?)?,
        })
    };
    if !all {
        return Some(Part {
            totals: totals_of(&v)?,
            tables: Vec::new(),
        });
    }
    let items = v.as_array()?;
    let mut tables = Vec::with_capacity(items.len().saturating_sub(1));
    for t in items.get(1..)? {
        let kind = match t.get("type")?.as_str()? {
            "H" => storage::TableType::Hash,
            "S" => storage::TableType::Set,
            "Z" => storage::TableType::SortedSet,
            _ => return None,
        };
        let name = t.get("table")?.as_str()?;
        // Names are checked before they are printed unescaped (`table_json`).
        if !crate::query::valid_name(name.as_bytes()) {
            return None;
        }
        let count = n(t, "count")?;
        let usage = Usage {
            count,
            size: n(t, "size").unwrap_or(0),
            capacity: n(t, "capacity").unwrap_or(0),
        };
        tables.push(TableStat {
            name: name.to_string(),
            kind,
            usage,
        });
    }
    Some(Part {
        totals: totals_of(items.first()?)?,
        tables,
    })
}

/// The answer of parts summed: `/stat`'s totals object, or (`all`) `/stat_all`'s array with
/// every part's tables by name.
pub(super) fn render(all: bool, parts: &[Part]) -> Response {
    let add = |a: &mut Usage, b: &Usage| {
        a.count += b.count;
        a.size += b.size;
        a.capacity += b.capacity;
    };
    let mut totals = Totals::default();
    for p in parts {
        add(&mut totals.kv, &p.totals.kv);
        add(&mut totals.hash, &p.totals.hash);
    }
    let mut out = String::new();
    if !all {
        totals_json(&mut out, &totals);
        return Response::text(out);
    }
    let mut tables: Vec<&TableStat> = parts.iter().flat_map(|p| &p.tables).collect();
    tables.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    out.push('[');
    totals_json(&mut out, &totals);
    for t in tables {
        out.push(',');
        table_json(&mut out, t);
    }
    out.push(']');
    Response::text(out)
}

/// One node has one partition; so has each group of a cluster (`peer` is a group there).
pub fn file_count(kv: &mut KvService, req: &Request, _: &mut Pass) -> Check<Response> {
    peer(kv, req)?;
    Ok(Response::text("1"))
}

fn usage_json(out: &mut String, u: &Usage) {
    let _ = write!(
        out,
        "{{\"count\":{},\"size\":{},\"capacity\":{}}}",
        u.count, u.size, u.capacity
    );
}

fn totals_json(out: &mut String, t: &Totals) {
    out.push_str("{\"TOTALIZE\":{\"KVPAIR\":");
    usage_json(out, &t.kv);
    out.push_str(",\"HASHTABLE\":");
    usage_json(out, &t.hash);
    out.push_str("}}");
}

fn table_json(out: &mut String, t: &TableStat) {
    // Table names are validated ASCII without quotes or backslashes: no escaping needed.
    let _ = write!(
        out,
        "{{\"table\":\"{}\",\"type\":\"{}\",\"count\":{}",
        t.name,
        t.kind.letter(),
        t.usage.count
    );
    if t.kind == storage::TableType::Hash {
        let _ = write!(
            out,
            ",\"size\":{},\"capacity\":{}",
            t.usage.size, t.usage.capacity
        );
    }
    out.push('}');
}
