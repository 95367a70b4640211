//! Long polls (`mq-api.md` §2.9, §4.12, §4.15): `/evget`, `/evsub` park until a message comes
//! or their timeout.

use super::{ack, clock, queue, required_number, worker, Check, MqService};
use crate::service::{ConnRef, Pass, Request};
use mq::Step;

pub fn evget(s: &mut MqService, req: &Request, who: ConnRef, pass: &mut Pass) -> Check<Step> {
    let (q, w, a) = (queue(req)?, worker(req)?, ack(req)?);
    let c = clock(pass);
    Ok(s.broker.evget(pass.batch, c, who, q, w, a))
}

pub fn evsub(s: &mut MqService, req: &Request, who: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let idx = required_number(req, "idx", 0, mq::MAX_IDX)?;
    let c = clock(pass);
    Ok(s.broker.evsub(pass.batch, c, who, q, idx))
}
