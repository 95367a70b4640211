//! Statistics (`kv-api.md` §7): `/stat`, `/stat_all`, `/file_count`, and their JSON.

use super::replicated::gate;
use super::{group_of, peer, plain_error, table, Check, KvService};
use crate::http::Response;
use crate::service::{Pass, Request};
use cluster::placement::Target;
use std::fmt::Write as _;
use storage::{TableStat, Totals, Usage};

/// The totals, or one table with `tb`. In a cluster a table is read in its group (and
/// `peer=g` of another group has no such table: `404`); the totals are this node's store's.
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
        None => match pass.batch.totals() {
            Ok(t) => totals_json(&mut out, &t),
            Err(e) => return Ok(plain_error(e)),
        },
    }
    Ok(Response::text(out))
}

pub fn stat_all(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    peer(kv, req)?;
    let b = &mut *pass.batch;
    let (totals, tables) = match b.totals().and_then(|t| Ok((t, b.all_tables(pass.now_ms)?))) {
        Ok(x) => x,
        Err(e) => return Ok(plain_error(e)),
    };
    let mut out = String::from("[");
    totals_json(&mut out, &totals);
    for t in &tables {
        out.push(',');
        table_json(&mut out, t);
    }
    out.push(']');
    Ok(Response::text(out))
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
