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
    /// Cluster mode (kv): where a handler's replicated write goes instead of the batch.
    pub replication: Replication,
}

/// How a kv handler's write leaves the pass (`kv::apply`). The single node applies it in the
/// pass's batch; in cluster mode the service asks for it, and gets the encoded command back
/// to hand to the cluster helper, which replicates it and answers later.
#[derive(Debug, Default, PartialEq)]
pub enum Replication {
    /// Applied in the pass's batch.
    #[default]
    Local,
    /// Replicated writes are wanted, for a cluster of `groups` groups.
    Wanted { groups: u32 },
    /// The handler's write, to propose to `group`: the bytes of `storage::Command::encode`.
    Proposed { group: u32, command: Vec<u8> },
}

/// A routed request: the operation's method, decoded parameters and raw body.
pub struct Request<'r> {
    pub method: Method,
    pub params: &'r Params,
    pub body: &'r [u8],
    /// The client's `Authorization` header (cluster mode hands it on with a forwarded read).
    pub authorization: Option<&'r [u8]>,
    /// Forwarded by another node of the cluster (`Hust-Forwarded`): never forwarded again.
    pub forwarded: bool,
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

    /// Cluster mode: registers the service's own socket (the cluster link) with the loop's
    /// poll under `token`. The single node has none.
    fn attach(&mut self, _registry: &mio::Registry, _token: mio::Token, _now: Instant) {}

    /// Cluster mode: the socket of [`Service::attach`] is ready. Answers it brings are
    /// handed out by the next [`Service::tick`] (in the same pass).
    fn on_link_ready(&mut self, _now: Instant) {}
}
