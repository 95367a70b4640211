//! The cluster's statistics (`cluster.md` §5): `/stat` and `/stat_all` without `peer` sum
//! every group's part, read here for the groups this node replicates and asked of a member
//! (`?peer=g&consistency=local`, the preferred leader) for the others; a part that does not
//! come is the whole answer's `503`.

use super::{unavailable, Job, Replicated, Waiting, Work};
use crate::cluster_link::Answer;
use crate::conn::Outcome;
use crate::http::Response;
use crate::kv::stat::{local_part, parse_part, render};
use crate::kv::{plain_error, KvService};
use crate::service::{ConnRef, Pass, Request};
use cluster::placement::Target;

/// Reads the parts of this node's groups now and asks for the others'; parks unless every
/// group is here.
pub(super) fn start(
    kv: &mut KvService,
    all: bool,
    who: ConnRef,
    req: &Request<'_>,
    pass: &mut Pass<'_, '_>,
) -> Outcome {
    let Some(c) = kv.cluster.as_mut() else {
        return Outcome::Reply(Response::empty(500));
    };
    let mut parts = Vec::with_capacity(c.groups as usize);
    let mut asks = Vec::new();
    for g in 0..c.groups {
        let members = c.placement.members(g);
        if members.contains(&c.this) {
            let mine = |t: &str| c.placement.group_of(Target::Table(t)) == g;
            match local_part(pass, c.placement.slots_of_group(g), mine, all) {
                Ok(p) => parts.push(Some(p)),
                Err(e) => return Outcome::Reply(plain_error(e)),
            }
        } else {
            let Some(&m) = members.first() else {
                return Outcome::Reply(unavailable("a group has no member"));
            };
            asks.push((g as usize, m));
            parts.push(None);
        }
    }
    if asks.is_empty() {
        let parts: Vec<_> = parts.into_iter().flatten().collect();
        return Outcome::Reply(render(all, &parts));
    }
    let path = if all { "/stat_all" } else { "/stat" };
    let auth = req.authorization.unwrap_or_default().to_vec();
    let j = c.job(who, Work::Gather { all, parts });
    for (g, m) in asks {
        let target = format!("{path}?peer={g}&consistency=local").into_bytes();
        let id = c.fetch(m, target, auth.clone());
        c.pending.insert(id, Waiting::Part(j, g));
    }
    Outcome::Park {
        deadline: pass.now + c.timeout,
    }
}

/// Group `g`'s part of gather job `j`: the answer once every part is in, or at the first
/// that fails.
pub(super) fn part(
    c: &mut Replicated,
    j: u64,
    g: usize,
    answer: Answer,
) -> Option<(ConnRef, Response)> {
    let Job { who, work } = c.jobs.get_mut(&j)?;
    let who = *who;
    let Work::Gather { all, parts } = work else {
        return None;
    };
    let all = *all;
    let failed = match answer {
        Answer::Reply {
            status: 200, body, ..
        } => match parse_part(&body, all) {
            Some(p) => {
                *parts.get_mut(g)? = Some(p);
                if parts.iter().any(Option::is_none) {
                    return None;
                }
                let parts: Vec<_> = parts.iter_mut().filter_map(Option::take).collect();
                c.jobs.remove(&j);
                return Some((who, render(all, &parts)));
            }
            None => format!("group {g}'s statistics are not of their shape"),
        },
        Answer::Reply { status, .. } => format!("group {g}'s statistics: {status}"),
        Answer::Unavailable(why) | Answer::Unknown(why) => format!("group {g}: {why}"),
        other => format!("group {g}: an answer of the wrong kind: {other:?}"),
    };
    // The other parts' answers find no job and are dropped.
    c.jobs.remove(&j);
    Some((who, unavailable(&failed)))
}
