//! Push queues (`mq-api.md` §4.13-4.14): `/pub`, `/sub`.

use super::{clock, message, number, queue, required_number, Check, MqService};
use crate::service::{ConnRef, Pass, Request};
use mq::Step;

/// `/pub` (`pub` is a keyword).
pub fn publish(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let idx = number(req, "idx", 0, mq::MAX_IDX)?;
    let ttl = number(req, "ttl", 1, s.ttl_max)?.unwrap_or(mq::DEFAULT_TTL.min(s.ttl_max));
    let msg = message(req)?;
    let c = clock(pass);
    Ok(Step::Reply(
        s.broker.publish(pass.batch, c, q, idx, ttl, msg),
    ))
}

pub fn sub(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let idx = required_number(req, "idx", 0, mq::MAX_IDX)?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.sub(pass.batch, c, q, idx)))
}
