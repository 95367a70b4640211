//! RPC through the broker (`mq-api.md` §4.16-4.18): clients call `/do_get`, workers claim and
//! answer tasks with `/do_post`; `/do_get_status`, `/do_post_status` count the slots.

use super::{bad, clock, queue, Check, MqService, MAX_RPC_TOKEN};
use crate::http::Response;
use crate::service::{ConnRef, Pass, Request};
use mq::{Reply, Step};

/// Parks the client until a worker answers its task.
pub fn do_get(s: &mut MqService, req: &Request, who: ConnRef, pass: &mut Pass) -> Check<Step> {
    let q = queue(req)?;
    let args = req
        .body()
        .ok_or_else(|| bad("the task arguments (body) are missing"))?;
    if args.len() as u64 > s.max_task_body {
        return Err(Response::empty(413));
    }
    Ok(s.broker.do_get(clock(pass), who, q, args.to_vec()))
}

/// With `token` (even empty): a worker's result. Without: a worker parks for a task.
pub fn do_post(s: &mut MqService, req: &Request, who: ConnRef, pass: &mut Pass) -> Check<Step> {
    if !req.params.has("token") {
        return Ok(s.broker.do_post_claim(clock(pass), who));
    }
    let token = req
        .params
        .get("token")
        .filter(|t| t.len() <= MAX_RPC_TOKEN && t.iter().all(u8::is_ascii_digit))
        .ok_or_else(|| bad("token must be 1-20 digits"))?;
    if req.body.len() as u64 > s.max_task_body {
        return Err(Response::empty(413));
    }
    // Twenty digits can exceed u64: such a token was never issued.
    let token = std::str::from_utf8(token)
        .ok()
        .and_then(|t| t.parse::<u64>().ok());
    Ok(Step::Reply(match token {
        Some(t) => s.broker.do_post_reply(clock(pass), t, req.body.to_vec()),
        None => Reply::NotFound,
    }))
}

pub fn do_get_status(s: &mut MqService, _: &Request, _: ConnRef, _: &mut Pass) -> Check<Step> {
    Ok(Step::Reply(s.broker.do_get_status()))
}

pub fn do_post_status(s: &mut MqService, _: &Request, _: ConnRef, _: &mut Pass) -> Check<Step> {
    Ok(Step::Reply(s.broker.do_post_status()))
}
