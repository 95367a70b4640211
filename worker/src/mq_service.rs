//! mq mode (`mq-api.md`): the service the event loop drives (parked requests, redelivery,
//! `/metrics` lines), the handler type of the mq rows of the route table, and what every family
//! shares: the parameter rules of §2.2-2.3 and the one mapping of the queue crate's replies to
//! status, headers and body ([`response`]). Everything stateful (queues, parked requests, RPC)
//! is the [`Broker`]'s; the endpoints, in one file per family, only translate.

use crate::conn::Outcome;
use crate::http::{Response, APPLICATION_JSON, TEXT_PLAIN};
use crate::query::{parse_bool_any_case, parse_u64, valid_name};
use crate::service::{ConnRef, Pass, Request, Service};
use mq::{Broker, Clock, Reply, Step};
use std::time::Instant;

pub mod admin;
pub mod longpoll;
pub mod pubsub;
pub mod queue;
pub mod rpc;
pub mod stat;

/// Longest `worker` name.
const MAX_WORKER: usize = 32;
/// Largest `/max`.
const MAX_NUM: u64 = mq::HARD_CAP;
/// Longest RPC token (u64 in decimal).
const MAX_RPC_TOKEN: usize = 20;

/// The mq mode service of the event loop.
pub struct MqService {
    broker: Broker<ConnRef>,
    /// `mq_ttl_maximum` in seconds.
    ttl_max: u64,
    /// `max_do_task_body_size`.
    max_task_body: u64,
}

impl MqService {
    /// Opens the queue database on the worker's store; `now_ms` is the wall clock (unix
    /// milliseconds).
    pub fn new(
        conf: &conf::Conf,
        store: &storage::Store,
        now_ms: u64,
    ) -> Result<MqService, mq::MqError> {
        let clock = Clock {
            now: Instant::now(),
            now_ms,
        };
        Ok(MqService {
            broker: Broker::open(store.env(), &conf.mq, clock)?,
            ttl_max: conf.mq.mq_ttl_maximum.as_secs().max(1),
            max_task_body: conf.mq.max_do_task_body_size,
        })
    }
}

/// An mq endpoint: a reply now, or a long poll to park.
pub type Handler = fn(&mut MqService, &Request<'_>, ConnRef, &mut Pass<'_, '_>) -> Check<Step>;

/// Runs an mq row's handler.
pub fn call(
    handler: Handler,
    mq: &mut MqService,
    req: &Request<'_>,
    who: ConnRef,
    pass: &mut Pass<'_, '_>,
) -> Outcome {
    match handler(mq, req, who, pass) {
        Ok(Step::Reply(r)) => Outcome::Reply(response(r)),
        Ok(Step::Park(d)) => Outcome::Park {
            deadline: pass.now + d,
        },
        Err(resp) => Outcome::Reply(resp),
    }
}

/// A parameter problem: the `400` (or `413`) to send instead.
pub type Check<T> = Result<T, Response>;

fn bad(why: &str) -> Response {
    Response::with_body(400, TEXT_PLAIN, format!("{why}\n").into_bytes())
}

fn clock(pass: &Pass<'_, '_>) -> Clock {
    Clock {
        now: pass.now,
        now_ms: pass.now_ms,
    }
}

/// A name parameter (`queue`, `token`): 1-64 bytes of `A-Z a-z 0-9 _ : .`.
fn name<'r>(req: &'r Request<'_>, param: &str) -> Check<&'r [u8]> {
    let v = req
        .params
        .get(param)
        .ok_or_else(|| bad(&format!("{param} is missing")))?;
    if !valid_name(v) {
        return Err(bad(&format!(
            "{param} must be 1-64 bytes of A-Z a-z 0-9 _ : ."
        )));
    }
    Ok(v)
}

/// `queue` (also the RPC task name).
fn queue<'r>(req: &'r Request<'_>) -> Check<&'r str> {
    // valid_name admits ASCII only.
    std::str::from_utf8(name(req, "queue")?).map_err(|_| bad("queue is not ASCII"))
}

/// `worker`: 1-32 visible ASCII bytes, without `"` and `\`.
fn worker<'r>(req: &'r Request<'_>) -> Check<&'r str> {
    let w = req
        .params
        .get("worker")
        .ok_or_else(|| bad("worker is missing"))?;
    if w.len() > MAX_WORKER
        || !w
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(bad(
            "worker must be 1-32 visible ASCII characters without quote or backslash",
        ));
    }
    std::str::from_utf8(w).map_err(|_| bad("worker is not ASCII"))
}

/// `ack`: `true`/`false` in any case, `1`/`0`; default true.
fn ack(req: &Request<'_>) -> Check<bool> {
    match req.params.get("ack") {
        None => Ok(true),
        Some(v) => parse_bool_any_case(v).ok_or_else(|| bad("ack must be true, false, 1 or 0")),
    }
}

/// A number parameter within `min..=max`.
fn number(req: &Request<'_>, name: &str, min: u64, max: u64) -> Check<Option<u64>> {
    match req.params.get(name) {
        None => Ok(None),
        Some(v) => parse_u64(v)
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| bad(&format!("{name} must be a number in {min}..{max}"))),
    }
}

fn required_number(req: &Request<'_>, name: &str, min: u64, max: u64) -> Check<u64> {
    number(req, name, min, max)?.ok_or_else(|| bad(&format!("{name} is missing")))
}

fn priori(req: &Request<'_>) -> Check<Option<u8>> {
    Ok(number(req, "priori", 0, 2)?.map(|p| p as u8))
}

/// The message of `put`/`pub`: a non-empty body (whatever the method), else `item`.
fn message<'r>(req: &'r Request<'_>) -> Check<&'r [u8]> {
    if !req.body.is_empty() {
        return Ok(req.body);
    }
    req.params
        .get("item")
        .ok_or_else(|| bad("no message: send a body or item"))
}

/// Maps the broker's answer to HTTP.
fn response(reply: Reply) -> Response {
    match reply {
        Reply::Done => Response::empty(200),
        Reply::Message(body) => {
            // An RPC result may be empty and is still a text/plain message.
            let mut r = Response::with_body(200, TEXT_PLAIN, body);
            r.content_type = Some(TEXT_PLAIN);
            r
        }
        Reply::Pending { body, token } => Response::with_body(200, TEXT_PLAIN, body)
            .header("Ack-Token", token)
            .header("Ack-Peer", 0),
        Reply::Published { si, ci } => Response::empty(200).header("Index", format!("{si}-{ci}")),
        Reply::Json(s) => Response::with_body(200, APPLICATION_JSON, s.into_bytes()),
        Reply::Task { name, token, args } => Response::with_body(200, TEXT_PLAIN, args)
            .header("Queue", name)
            .header("Token", token),
        Reply::NotFound => Response::empty(404),
        Reply::OutOfWindow { si, ci } => Response::empty(403).header("Index", format!("{si}-{ci}")),
        Reply::WrongType => Response::empty(409),
        Reply::Timeout => Response::empty(408),
        Reply::Busy => Response::empty(503),
        Reply::Storage(storage::StorageError::MapFull) => Response::empty(507),
        Reply::Storage(storage::StorageError::Stopped { .. }) => Response::empty(503),
        Reply::Storage(_) => Response::empty(500),
    }
}

impl Service for MqService {
    fn bad_request(&self, why: &str) -> Response {
        bad(why)
    }

    fn park_timeout(&mut self, who: ConnRef, _pass: &mut Pass<'_, '_>) -> Response {
        response(self.broker.park_timeout(who))
    }

    fn park_cancel(&mut self, who: ConnRef) {
        self.broker.park_cancel(who);
    }

    fn tick(&mut self, pass: &mut Pass<'_, '_>, wakeups: &mut Vec<(ConnRef, Response)>) {
        let c = clock(pass);
        let mut out = Vec::new();
        self.broker.tick(&mut *pass.batch, c, &mut out);
        wakeups.extend(out.into_iter().map(|(who, r)| (who, response(r))));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.broker.next_deadline()
    }

    fn metrics(&mut self, pass: &mut Pass<'_, '_>, out: &mut String) {
        use std::fmt::Write as _;
        let c = clock(pass);
        let depths = self.broker.depths(&mut *pass.batch, c);
        out.push_str("# HELP huststore_mq_ready_messages Messages waiting in a queue.\n");
        out.push_str("# TYPE huststore_mq_ready_messages gauge\n");
        for (name, ready, _) in &depths {
            // Queue names are `A-Z a-z 0-9 _ : .`: nothing to escape in a label.
            let _ = writeln!(
                out,
                "huststore_mq_ready_messages{{queue=\"{name}\"}} {ready}"
            );
        }
        out.push_str("# HELP huststore_mq_unacked_messages Deliveries waiting for an ack.\n");
        out.push_str("# TYPE huststore_mq_unacked_messages gauge\n");
        for (name, _, unacked) in &depths {
            let _ = writeln!(
                out,
                "huststore_mq_unacked_messages{{queue=\"{name}\"}} {unacked}"
            );
        }
        let (evget, evsub, tasks, workers) = self.broker.parked_counts();
        let gauges = [
            (
                "huststore_mq_parked_evget",
                "Parked /evget requests.",
                evget,
            ),
            (
                "huststore_mq_parked_evsub",
                "Parked /evsub requests.",
                evsub,
            ),
            ("huststore_mq_rpc_tasks", "RPC tasks in flight.", tasks),
            (
                "huststore_mq_rpc_workers",
                "Workers parked in /do_post.",
                workers,
            ),
        ];
        for (name, help, value) in gauges {
            crate::metrics::gauge(out, name, help, value);
        }
    }

    fn retire(&mut self, _pass: &mut Pass<'_, '_>, wakeups: &mut Vec<(ConnRef, Response)>) {
        let mut out = Vec::new();
        self.broker.retire(&mut out);
        wakeups.extend(out.into_iter().map(|(who, r)| (who, response(r))));
    }
}
