//! Queue status (`mq-api.md` §3, §4.8-4.10): `/worker`, `/stat`, `/stat_all`.

use super::{clock, queue, Check, MqService};
use crate::service::{ConnRef, Pass, Request};
use mq::Step;

/// The recent consumers of a queue.
pub fn worker(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.worker_list(pass.batch, c, q)))
}

pub fn stat(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.stat(pass.batch, c, q)))
}

pub fn stat_all(s: &mut MqService, _: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let c = clock(pass);
    Ok(Step::Reply(s.broker.stat_all(pass.batch, c)))
}
