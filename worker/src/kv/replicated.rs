//! Cluster mode's side of a kv worker (`cluster.md` §3–§5): the link to the node's helper and
//! every request parked on it. A replicated write parks until its group applied it (`kv::apply`
//! builds the command). A read of a group this node replicates runs here: at once with
//! `reads local` (or `consistency=local`), after a read barrier with `reads linearizable`. A
//! read of a group this node does not replicate is forwarded: the helper GETs it from a member
//! (the preferred leader first, then the others) and its answer is relayed. The `*2` reads ask
//! every replica and compare; the HA administration paths relay the helper's reports.
//!
//! A read handler asks for this through [`gate`] (or [`compare`], [`report`]) once its
//! parameters are checked: `Ok` means "read here now"; otherwise the handler's answer is a
//! placeholder, the plan is left in [`Replicated::plan`] and [`call`] parks the request in an
//! owned form. At wake-up ([`tick`]) the row's handler runs again with the gates open.

use super::stat::Part;
use super::{bad, replicated, Check, Handler, KvService};
use crate::cluster_link::{Answer, Link};
use crate::conn::Outcome;
use crate::http::{Method, Response};
use crate::query::{self, Params};
use crate::service::{ConnRef, Pass, Replication, Request};
pub use answers::Compare;
use answers::{compose, plain_of, unavailable, Plain};
use cluster::placement::{NodeIndex, Placement, Target};
use cluster::report::Report;
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod answers;
mod gather;
#[cfg(test)]
mod tests;
mod wake;
#[cfg(test)]
pub use tests::for_test;

/// How often a worker asks the helper for the consensus lines of `/metrics`; a copy older than
/// [`METRICS_STALE`] is not shown (`huststore_cluster_report_up 0` instead).
const METRICS_EVERY: Duration = Duration::from_secs(2);
const METRICS_STALE: Duration = Duration::from_secs(10);

pub struct Replicated {
    pub link: Link,
    pub groups: u32,
    /// How long a request may wait for its group (the conf's cluster `timeout`).
    pub timeout: Duration,
    placement: Placement,
    this: NodeIndex,
    reads: conf::Reads,
    /// Requests to the helper in flight: what each answer is for.
    pending: HashMap<u64, Waiting>,
    /// Parked reads, by job number.
    jobs: HashMap<u64, Job>,
    next_job: u64,
    /// While a handler runs with its reads cleared (a barrier passed, a replica's own read).
    open: bool,
    /// What the handler `call` runs asked for instead of answering.
    plan: Option<Plan>,
    metrics: Option<(Instant, String)>,
    metrics_asked: bool,
    next_metrics: Instant,
}

enum Waiting {
    Write(ConnRef),
    Job(u64),
    /// Replica `i` of a compare job.
    Part(u64, usize),
    Metrics,
}

struct Job {
    who: ConnRef,
    work: Work,
}

enum Work {
    Barrier {
        handler: Handler,
        req: Owned,
    },
    Relay {
        target: Vec<u8>,
        authorization: Vec<u8>,
        /// Members still to ask when this one fails.
        next: Vec<NodeIndex>,
    },
    Report,
    Compare {
        kind: Compare,
        answers: Vec<Option<Plain>>,
    },
    /// Every group's part of `/stat` (or, `all`, `/stat_all`), by group.
    Gather {
        all: bool,
        parts: Vec<Option<Part>>,
    },
}

/// What a read handler asked for.
enum Plan {
    Barrier {
        group: u32,
    },
    Forward {
        group: u32,
        target: Vec<u8>,
    },
    Compare {
        group: u32,
        kind: Compare,
        plain: Handler,
        target: Vec<u8>,
    },
    Report(Report),
    Gather {
        all: bool,
    },
}

/// A request kept while it is parked.
struct Owned {
    method: Method,
    params: Params,
    body: Vec<u8>,
    authorization: Option<Vec<u8>>,
    forwarded: bool,
}

impl Owned {
    fn of(req: &Request<'_>) -> Owned {
        Owned {
            method: req.method,
            params: req.params.clone(),
            body: req.body.to_vec(),
            authorization: req.authorization.map(<[u8]>::to_vec),
            forwarded: req.forwarded,
        }
    }

    fn request(&self) -> Request<'_> {
        Request {
            method: self.method,
            params: &self.params,
            body: &self.body,
            authorization: self.authorization.as_deref(),
            forwarded: self.forwarded,
        }
    }
}

impl Replicated {
    pub fn new(conf: &conf::Conf, cluster: &conf::ClusterConf) -> Replicated {
        let placement = Placement::from_conf(cluster);
        Replicated {
            // A request waits for a link still connecting (a worker just started) rather than
            // being refused at once; it gives up before its park times out, so that what never
            // left is a 503, not a 504.
            link: Link::new(conf.data_dir.join(super::CLUSTER_SOCKET))
                .queue_for(cluster.timeout * 4 / 5),
            groups: placement.groups(),
            timeout: cluster.timeout,
            placement,
            this: cluster.this,
            reads: cluster.reads,
            pending: HashMap::new(),
            jobs: HashMap::new(),
            next_job: 1,
            open: false,
            plan: None,
            metrics: None,
            metrics_asked: false,
            next_metrics: Instant::now(),
        }
    }

    /// The group of what a request is placed by.
    pub fn group_of(&self, target: Target<'_>) -> u32 {
        self.placement.group_of(target)
    }

    /// The slots group `group` owns.
    pub fn slots_of(&self, group: u32) -> std::ops::Range<u32> {
        self.placement.slots_of_group(group)
    }

    /// Forgets what `who` waits for; whether it waited for a write (its answer, if it comes,
    /// is dropped; the write may still happen: nothing is cancelled remotely), a read, or
    /// nothing.
    pub fn forget(&mut self, who: ConnRef) -> Forgot {
        let before = self.pending.len();
        self.pending
            .retain(|_, w| !matches!(w, Waiting::Write(c) if *c == who));
        if self.pending.len() != before {
            return Forgot::Write;
        }
        let before = self.jobs.len();
        self.jobs.retain(|_, j| j.who != who);
        // Their requests' answers find no job and are dropped.
        if self.jobs.len() != before {
            Forgot::Read
        } else {
            Forgot::Nothing
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let metrics = (!self.metrics_asked).then_some(self.next_metrics);
        match (self.link.next_deadline(), metrics) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The consensus lines of `/metrics` (the helper's latest, while fresh).
    pub fn metrics(&self, now: Instant, out: &mut String) {
        match &self.metrics {
            Some((at, text)) if now.saturating_duration_since(*at) <= METRICS_STALE => {
                out.push_str(text);
                if !text.is_empty() && !text.ends_with('\n') {
                    out.push('\n');
                }
                report_up(out, 1);
            }
            _ => report_up(out, 0),
        }
    }

    fn job(&mut self, who: ConnRef, work: Work) -> u64 {
        let j = self.next_job;
        self.next_job += 1;
        self.jobs.insert(j, Job { who, work });
        j
    }

    fn fetch(&mut self, node: NodeIndex, target: Vec<u8>, authorization: Vec<u8>) -> u64 {
        let node = u32::try_from(node).unwrap_or(u32::MAX);
        self.link.fetch(node, target, authorization)
    }
}

/// What [`Replicated::forget`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Forgot {
    Write,
    Read,
    Nothing,
}

/// The placeholder a gated handler returns: never sent, `call` parks the request.
fn placeholder() -> Response {
    Response::empty(202)
}

/// A read of `group`: `Ok` to read here now. `path` is the row's (a forwarded read goes to
/// the same path), `body_key` whether a POST body stands for `key` (`key_or_body`).
pub fn gate(
    kv: &mut KvService,
    req: &Request<'_>,
    path: &str,
    group: u32,
    body_key: bool,
) -> Check<()> {
    let Some(c) = kv.cluster.as_mut() else {
        return Ok(());
    };
    if c.open {
        return Ok(());
    }
    let linearizable = match req.params.get("consistency") {
        None => c.reads == conf::Reads::Linearizable,
        Some(b"local") => false,
        Some(b"linearizable") => true,
        Some(_) => return Err(bad()),
    };
    if c.placement.is_member(group, c.this) {
        if !linearizable {
            return Ok(());
        }
        c.plan = Some(Plan::Barrier { group });
    } else if req.forwarded {
        return Err(unavailable("forwarded to a node not in the group"));
    } else {
        let target = target(path, req, body_key, false);
        c.plan = Some(Plan::Forward { group, target });
    }
    Err(placeholder())
}

/// A `*2` read of `group`: `Ok` to answer as the plain read (a single node); else every
/// replica is asked for the plain read `path` (`consistency=local`), this node through
/// `plain`, and the answers compared.
pub fn compare(
    kv: &mut KvService,
    req: &Request<'_>,
    path: &str,
    group: u32,
    kind: Compare,
    plain: Handler,
) -> Check<()> {
    let Some(c) = kv.cluster.as_mut() else {
        return Ok(());
    };
    if c.open {
        return Ok(());
    }
    let target = target(path, req, kind == Compare::Member, true);
    c.plan = Some(Plan::Compare {
        group,
        kind,
        plain,
        target,
    });
    Err(placeholder())
}

/// A report of the helper's: `Ok` on a single node (its own answer).
pub fn report(kv: &mut KvService, what: Report) -> Check<()> {
    let Some(c) = kv.cluster.as_mut() else {
        return Ok(());
    };
    c.plan = Some(Plan::Report(what));
    Err(placeholder())
}

/// The cluster's totals of `/stat` (`all`: `/stat_all`), gathered from every group; `Ok` on
/// a single node (its own are the whole).
pub fn gather(kv: &mut KvService, all: bool) -> Check<()> {
    let Some(c) = kv.cluster.as_mut() else {
        return Ok(());
    };
    if c.open {
        return Ok(());
    }
    c.plan = Some(Plan::Gather { all });
    Err(placeholder())
}

/// `path?query` for another node: the request's parameters, a POST body as `key` when it
/// stands for it, and `consistency=local` when `local`.
fn target(path: &str, req: &Request<'_>, body_key: bool, local: bool) -> Vec<u8> {
    let body = req.body().filter(|_| body_key);
    let mut out = path.as_bytes().to_vec();
    out.push(b'?');
    let mut first = true;
    let mut pair = |out: &mut Vec<u8>, n: &[u8], v: &[u8]| {
        if !std::mem::take(&mut first) {
            out.push(b'&');
        }
        query::encode(n, out);
        out.push(b'=');
        query::encode(v, out);
    };
    for (n, v) in req.params.pairs() {
        if (body.is_some() && n == b"key") || (local && n == b"consistency") {
            continue;
        }
        pair(&mut out, n, v);
    }
    if let Some(b) = body {
        pair(&mut out, b"key", b);
    }
    if local {
        pair(&mut out, b"consistency", b"local");
    }
    out
}

/// Runs a kv row's handler in cluster mode: a replicated write parks until the helper answers
/// it, a read as its gate planned.
pub fn call(
    handler: Handler,
    kv: &mut KvService,
    req: &Request<'_>,
    who: ConnRef,
    pass: &mut Pass<'_, '_>,
) -> Outcome {
    let Some(c) = kv.cluster.as_mut() else {
        return Outcome::Reply(handler(kv, req, pass).unwrap_or_else(|r| r));
    };
    c.plan = None;
    c.open = false;
    pass.replication = Replication::Wanted { groups: c.groups };
    let resp = handler(kv, req, pass).unwrap_or_else(|r| r);
    let proposed = std::mem::take(&mut pass.replication);
    let Some(c) = kv.cluster.as_mut() else {
        return Outcome::Reply(resp);
    };
    let deadline = pass.now + c.timeout;
    let park = Outcome::Park { deadline };
    if let Replication::Proposed { group, command } = proposed {
        let id = c.link.propose(group, command);
        c.pending.insert(id, Waiting::Write(who));
        return park;
    }
    let auth = || req.authorization.unwrap_or_default().to_vec();
    match c.plan.take() {
        None => Outcome::Reply(resp),
        Some(Plan::Barrier { group }) => {
            let id = c.link.read_barrier(group);
            let j = c.job(
                who,
                Work::Barrier {
                    handler,
                    req: Owned::of(req),
                },
            );
            c.pending.insert(id, Waiting::Job(j));
            park
        }
        Some(Plan::Forward { group, target }) => {
            let mut next: Vec<NodeIndex> = c
                .placement
                .members(group)
                .iter()
                .copied()
                .filter(|&m| m != c.this)
                .collect();
            if next.is_empty() {
                return Outcome::Reply(unavailable("the group has no member"));
            }
            let first = next.remove(0);
            let id = c.fetch(first, target.clone(), auth());
            let work = Work::Relay {
                target,
                authorization: auth(),
                next,
            };
            let j = c.job(who, work);
            c.pending.insert(id, Waiting::Job(j));
            park
        }
        Some(Plan::Report(what)) => {
            let id = c.link.report(what.code());
            let j = c.job(who, Work::Report);
            c.pending.insert(id, Waiting::Job(j));
            park
        }
        Some(Plan::Gather { all }) => gather::start(kv, all, who, req, pass),
        Some(Plan::Compare {
            group,
            kind,
            plain,
            target,
        }) => {
            let members = c.placement.members(group).to_vec();
            let this = c.this;
            let mut answers = vec![None; members.len()];
            let mut asks = Vec::new();
            for (i, &m) in members.iter().enumerate() {
                if m == this {
                    answers[i] = Some(plain_of(run_here(kv, plain, req, pass)));
                } else {
                    asks.push((i, m));
                }
            }
            let Some(c) = kv.cluster.as_mut() else {
                return Outcome::Reply(resp);
            };
            if asks.is_empty() {
                let answers: Vec<Plain> = answers.into_iter().flatten().collect();
                return Outcome::Reply(compose(kind, &answers));
            }
            let j = c.job(who, Work::Compare { kind, answers });
            for (i, m) in asks {
                let id = c.fetch(m, target.clone(), auth());
                c.pending.insert(id, Waiting::Part(j, i));
            }
            park
        }
    }
}

/// Runs `handler` with its reads cleared: its answer, lent bytes copied (they are valid while
/// the pass's batch is open, and a parked answer may be sent after it).
fn run_here(
    kv: &mut KvService,
    handler: Handler,
    req: &Request<'_>,
    pass: &mut Pass<'_, '_>,
) -> Response {
    if let Some(c) = kv.cluster.as_mut() {
        c.open = true;
    }
    let mut resp = handler(kv, req, pass).unwrap_or_else(|r| r);
    if let Some(c) = kv.cluster.as_mut() {
        c.open = false;
        c.plan = None;
    }
    if let Some(lent) = resp.lent.take() {
        // SAFETY: `lent` was read by this pass's batch, which is still open (the handler ran
        // in this pass); the bytes are copied before it ends.
        resp.body = unsafe { lent.bytes() }.to_vec();
    }
    resp
}

/// The periodic work of cluster mode: reconnects, the helper's answers become wakeups, and the
/// `/metrics` report is refreshed.
pub fn tick(kv: &mut KvService, pass: &mut Pass<'_, '_>, wakeups: &mut Vec<(ConnRef, Response)>) {
    let Some(c) = kv.cluster.as_mut() else {
        return;
    };
    c.link.tick(pass.now);
    if !c.metrics_asked && pass.now >= c.next_metrics {
        let id = c.link.report(Report::Metrics.code());
        c.pending.insert(id, Waiting::Metrics);
        c.metrics_asked = true;
    }
    let answers: Vec<(u64, Answer)> = c.link.take_answers().collect();
    for (id, answer) in answers {
        let Some(c) = kv.cluster.as_mut() else {
            return;
        };
        // Not pending: answered already, or its client left or timed out; dropped.
        let Some(waiting) = c.pending.remove(&id) else {
            continue;
        };
        match waiting {
            Waiting::Write(who) => wakeups.push((who, replicated(answer))),
            Waiting::Metrics => {
                c.metrics_asked = false;
                c.next_metrics = pass.now + METRICS_EVERY;
                if let Answer::Reply {
                    status: 200, body, ..
                } = answer
                {
                    c.metrics = Some((pass.now, String::from_utf8_lossy(&body).into_owned()));
                }
            }
            Waiting::Job(j) => {
                if let Some(job) = c.jobs.remove(&j) {
                    if let Some(resp) = wake::finish(kv, j, job, answer, pass) {
                        wakeups.push(resp);
                    }
                }
            }
            Waiting::Part(j, i) => {
                if let Some(resp) = wake::part(c, j, i, answer) {
                    wakeups.push(resp);
                }
            }
        }
    }
}

/// Whether the consensus figures beside it are fresh (promtool wants HELP and TYPE on it too).
fn report_up(out: &mut String, up: u8) {
    crate::metrics::gauge(
        out,
        "huststore_cluster_report_up",
        "1 while the cluster helper's consensus figures above are fresh, else 0.",
        up,
    );
}
