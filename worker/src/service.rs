//! What the event loop asks of a mode (kv or mq) besides its route handlers: the mode's `400`,
//! parked requests, periodic work and its `/metrics` lines. The handlers themselves are named
//! by the route table (`routes`), which reaches the concrete service through [`std::any::Any`].

use crate::http::{Method, Response};
use crate::query::Params;
use std::time::Instant;

/// A connection, as a service may remember it while its request is parked. The generation
/// tells a reused slab slot from the connection that parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub key: usize,
    pub generation: u64,
}

/// The state of one loop pass handed to handlers.
pub struct Pass<'p, 's> {
    pub batch: &'p mut storage::Batch<'s>,
    pub now: Instant,
    /// Wall-clock milliseconds since the unix epoch.
    pub now_ms: u64,
}

/// A routed request: the operation's method, decoded parameters and raw body.
pub struct Request<'r> {
    pub method: Method,
    pub params: &'r Params,
    pub body: &'r [u8],
}

impl Request<'_> {
    /// The body when it counts (`POST`/`PUT` with a non-empty body), as the specs read it.
    pub fn body(&self) -> Option<&[u8]> {
        match self.method {
            Method::Post | Method::Put if !self.body.is_empty() => Some(self.body),
            _ => None,
        }
    }
}

/// `Any`: a route row's handler takes its mode's concrete service.
pub trait Service: std::any::Any {
    /// The `400` of this mode (kv: empty body; mq: a one-line reason).
    fn bad_request(&self, why: &str) -> Response;

    /// A parked request reached its deadline.
    fn park_timeout(&mut self, who: ConnRef, pass: &mut Pass<'_, '_>) -> Response;

    /// The client of a parked request went away.
    fn park_cancel(&mut self, who: ConnRef);

    /// Periodic work of each pass (expiry, redelivery); parked requests it can answer now
    /// go into `wakeups`.
    fn tick(&mut self, pass: &mut Pass<'_, '_>, wakeups: &mut Vec<(ConnRef, Response)>);

    /// When [`Service::tick`] next has work to do.
    fn next_deadline(&self) -> Option<Instant>;

    /// Appends the mode's own `/metrics` lines (Prometheus text).
    fn metrics(&mut self, _pass: &mut Pass<'_, '_>, _out: &mut String) {}

    /// The worker retires: answer every parked request now (as on its timeout).
    fn retire(&mut self, pass: &mut Pass<'_, '_>, wakeups: &mut Vec<(ConnRef, Response)>);
}
