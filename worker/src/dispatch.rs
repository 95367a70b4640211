//! The generic stage of every request, between a connection's parser and the mode's service:
//! the route table's checks, then the row's handler (health rows before the query is decoded,
//! the others after); and the records of what each dispatch did ([`PassLog`],
//! [`ParkedRequests`]), which become metrics and access-log lines once the request is
//! answered. It never touches a socket or the commit: what it returns is queued by the
//! connection and sent by the loop.

use crate::access_log::{self, AccessLog};
use crate::conn::Outcome;
use crate::http::Head;
use crate::metrics::{Label, SharedMetrics, OTHER};
use crate::routes::{self, Handler, Kind, Route};
use crate::service::{ConnRef, Pass, Service};
use crate::{auth::Users, query::Params};
use std::time::{Duration, Instant};

/// Filled by [`dispatch`] during a pass.
#[derive(Default)]
pub struct PassLog {
    /// Label, status, body size and access-log entry of every reply given in the pass (timed
    /// when the pass's replies go out).
    records: Vec<(Label, u16, usize, Option<access_log::Entry>)>,
    /// Requests parked in the pass: connection, label, whether it is a `/debug/sleep`, entry.
    parked: Vec<(ConnRef, Label, bool, Option<access_log::Entry>)>,
}

/// What [`dispatch`] needs besides the request.
pub struct DispatchCtx<'a> {
    pub routes: &'static [Route],
    pub users: Option<&'a Users>,
    pub debug: bool,
    pub metrics: SharedMetrics,
    pub store: &'a storage::Store,
}

/// One connection's requests in one pass: everything [`dispatch`] needs besides the request.
pub struct Serving<'c, 'a, 'p, 's> {
    pub ctx: &'c DispatchCtx<'a>,
    pub who: ConnRef,
    pub peer: Option<std::net::SocketAddr>,
    pub service: &'c mut dyn Service,
    pub pass: &'c mut Pass<'p, 's>,
    pub log: &'c mut PassLog,
}

/// The generic stage of every request: routing checks, the health paths, `/metrics`, query
/// decoding, then the mode's service.
pub fn dispatch(serving: &mut Serving<'_, '_, '_, '_>, head: &Head, body: &[u8]) -> Outcome {
    let Serving {
        ctx,
        who,
        peer,
        service,
        pass,
        log,
    } = serving;
    let (who, peer) = (*who, *peer);
    let (label, outcome, slept) = route_and_serve(ctx, head, body, who, *service, pass);
    let entry = head.access.as_ref().map(|a| access_log::Entry {
        remote: peer,
        user: access_log::user_of(head.authorization.as_deref()),
        head: a.clone(),
    });
    match &outcome {
        Outcome::Reply(resp) => log
            .records
            .push((label, resp.status, resp.body_len(), entry)),
        Outcome::Park { .. } => log.parked.push((who, label, slept, entry)),
    }
    outcome
}

fn route_and_serve(
    ctx: &DispatchCtx<'_>,
    head: &Head,
    body: &[u8],
    who: ConnRef,
    service: &mut dyn Service,
    pass: &mut Pass<'_, '_>,
) -> (Label, Outcome, bool) {
    let (label, route) = match routes::route(
        ctx.routes,
        &head.path,
        head.method,
        head.authorization.as_deref(),
        ctx.users,
        ctx.debug,
    ) {
        Ok(found) => found,
        Err((label, resp)) => return (label.unwrap_or(OTHER), Outcome::Reply(resp), false),
    };
    let reply = |resp| (label, Outcome::Reply(resp), false);
    let handler = match route.handler {
        Handler::Health(health) => {
            let health_ctx = routes::health::Ctx {
                routes: ctx.routes,
                metrics: ctx.metrics,
                store: ctx.store,
            };
            return reply(health(&health_ctx, service, pass));
        }
        Handler::Request(handler) => handler,
    };
    let params = match Params::parse(&head.query) {
        Ok(p) => p,
        Err(_) => return reply(service.bad_request("malformed % escape in the query")),
    };
    let req = crate::service::Request {
        method: head.method,
        params: &params,
        body,
        authorization: head.authorization.as_deref(),
        forwarded: head.forwarded,
    };
    let outcome = handler.call(&req, who, service, pass);
    (label, outcome, route.kind == Kind::Debug)
}

/// What the metrics and the access log keep of an answered request: label, status, body
/// size and access-log entry.
pub type Record = (Label, u16, usize, Option<access_log::Entry>);

/// Accounts one answered request, `took` after it arrived, in the metrics and the access log.
pub fn account(
    metrics: &SharedMetrics,
    access_log: Option<&mut AccessLog>,
    (label, status, bytes, entry): Record,
    took: Duration,
) {
    metrics.request(label, status, took.as_micros() as u64);
    if let (Some(log), Some(entry)) = (access_log, entry) {
        log.record(&entry, status, bytes, took);
    }
}

impl PassLog {
    /// Accounts every reply given in the pass, `took` after the pass began, and flushes the
    /// access log.
    pub fn account(
        &mut self,
        metrics: &SharedMetrics,
        mut access_log: Option<&mut AccessLog>,
        took: Duration,
    ) {
        for record in self.records.drain(..) {
            account(metrics, access_log.as_deref_mut(), record, took);
        }
        if let Some(log) = access_log {
            log.flush();
        }
    }
}

/// The parked requests not answered yet, with what their record needs.
#[derive(Default)]
pub struct ParkedRequests {
    /// Connection, metrics label, when it parked, its access-log entry.
    requests: Vec<(ConnRef, Label, Instant, Option<access_log::Entry>)>,
    /// Connections with a parked `/debug/sleep`.
    sleepers: Vec<ConnRef>,
}

impl ParkedRequests {
    /// Moves the requests parked by the last dispatches (at `now`) out of `log`.
    pub fn settle(&mut self, log: &mut PassLog, now: Instant) {
        for (who, label, slept, entry) in log.parked.drain(..) {
            if slept {
                self.sleepers.push(who);
            }
            self.requests.push((who, label, now, entry));
        }
    }

    /// The parked request of `who` is answered: its label, when it parked, its entry.
    pub fn take(&mut self, who: ConnRef) -> Option<(Label, Instant, Option<access_log::Entry>)> {
        let pos = self.requests.iter().position(|p| p.0 == who)?;
        let (_, label, since, entry) = self.requests.swap_remove(pos);
        Some((label, since, entry))
    }

    /// Takes `who` off the sleepers; whether its parked request was a `/debug/sleep`.
    pub fn slept(&mut self, who: ConnRef) -> bool {
        let Some(pos) = self.sleepers.iter().position(|s| *s == who) else {
            return false;
        };
        self.sleepers.swap_remove(pos);
        true
    }

    /// The client of a parked request went away.
    pub fn forget(&mut self, who: ConnRef) {
        self.sleepers.retain(|s| *s != who);
        self.requests.retain(|p| p.0 != who);
    }
}
