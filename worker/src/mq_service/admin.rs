//! Queue settings (`mq-api.md` §4.4-4.7, 4.11): `/timeout`, `/lock`, `/max`, `/purge`, and the
//! no-op `/autost`.

use super::{bad, clock, priori, queue, required_number, Check, MqService, MAX_NUM};
use crate::service::{ConnRef, Pass, Request};
use mq::{Reply, Step};

pub fn timeout(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let minute = required_number(req, "minute", 1, 255)?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.set_timeout(
        pass.batch,
        c,
        q,
        minute as u32,
    )))
}

pub fn lock(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let on = required_number(req, "on", 0, 1)?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.set_lock(pass.batch, c, q, on == 1)))
}

pub fn max(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let num = required_number(req, "num", 0, MAX_NUM)?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.set_max(pass.batch, c, q, num)))
}

pub fn purge(s: &mut MqService, req: &Request, _: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let prio = priori(req)?.ok_or_else(|| bad("priori is missing"))?;
    let c = clock(pass);
    Ok(Step::Reply(s.broker.purge(pass.batch, c, q, prio)))
}

/// The original refreshed its status cache here; ours is always current.
pub fn autost(_: &mut MqService, _: &Request, _: ConnRef, _: &mut Pass) -> Check<Step> {
    Ok(Step::Reply(Reply::Done))
}
