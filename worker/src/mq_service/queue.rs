//! Normal queues (`mq-api.md` §4.1-4.3): `/put`, `/get`, `/ack`.

use super::{clock, message, name, priori, queue, worker, Check, MqService};
use crate::service::{ConnRef, Pass, Request};
use mq::Step;

pub fn put(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let prio = priori(req)?.unwrap_or(0);
    let msg = message(req)?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.put(pass.batch, c, q, prio, msg)))
}

pub fn get(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    // `super::ack` is the parameter; `ack` below is the `/ack` endpoint.
    let (q, w, a) = (queue(req)?, worker(req)?, super::ack(req)?);
    let c = clock(pass);
    Ok(Step::Reply(s.broker.get(pass.batch, c, q, w, a)))
}

pub fn ack(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let token = name(req, "token")?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.ack(pass.batch, c, q, token)))
}
