//! The paths both modes share: `/status.html`, `/version`, `/metrics` (`ops.md`), and the
//! test-only `/debug/sleep`. They answer from the worker's own state; only `/metrics` asks the
//! mode for its lines.

use super::Route;
use crate::conn::Outcome;
use crate::http::Response;
use crate::metrics::{self, SharedMetrics};
use crate::query::parse_u64;
use crate::service::{Pass, Request, Service};
use std::time::Duration;

/// What the health paths read.
pub struct Ctx<'a> {
    /// The mode's table (the labels of `/metrics`).
    pub routes: &'static [Route],
    pub metrics: SharedMetrics,
    pub store: &'a storage::Store,
}

/// A health path: no query.
pub type Handler = fn(&Ctx<'_>, &mut dyn Service, &mut Pass<'_, '_>) -> Response;

/// A test-only path: a decoded request.
pub type DebugHandler = fn(&Request<'_>, &mut dyn Service, &mut Pass<'_, '_>) -> Outcome;

/// Longest `/debug/sleep`.
const MAX_SLEEP_MS: u64 = 600_000;

pub fn status(_: &Ctx, _: &mut dyn Service, _: &mut Pass) -> Response {
    Response::text("ok\n")
}

pub fn version(_: &Ctx, _: &mut dyn Service, _: &mut Pass) -> Response {
    Response::text(format!("huststore {}\n", env!("CARGO_PKG_VERSION")))
}

/// Prometheus text: the request counters of every worker, the store's room, the mode's lines.
pub fn metrics(ctx: &Ctx, service: &mut dyn Service, pass: &mut Pass) -> Response {
    let mut out = String::with_capacity(8192);
    let paths: Vec<&str> = ctx.routes.iter().map(|r| r.path).collect();
    ctx.metrics.render(&paths, &mut out);
    let (used, size) = ctx.store.map_usage();
    metrics::gauge(
        &mut out,
        "huststore_store_used_bytes",
        "Bytes of the persistent store in use.",
        used,
    );
    metrics::gauge(
        &mut out,
        "huststore_store_free_bytes",
        "Bytes left before the store is full (map_size - used).",
        size.saturating_sub(used),
    );
    service.metrics(pass, &mut out);
    Response::with_body(200, "text/plain; version=0.0.4", out.into_bytes())
}

/// Parks the request for `ms` milliseconds (a slow request, for the shutdown tests).
pub fn debug_sleep(req: &Request, service: &mut dyn Service, pass: &mut Pass) -> Outcome {
    let ms = req
        .params
        .get("ms")
        .and_then(parse_u64)
        .filter(|&ms| ms <= MAX_SLEEP_MS);
    match ms {
        Some(ms) => Outcome::Park {
            deadline: pass.now + Duration::from_millis(ms),
        },
        None => Outcome::Reply(service.bad_request("ms must be 0..600000")),
    }
}
