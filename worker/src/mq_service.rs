//! mq mode (`mq-api.md`). Not built yet: every queue path answers 501 until the queue
//! crate lands (issue 4).

use crate::conn::Outcome;
use crate::http::Response;
use crate::routes::Op;
use crate::service::{ConnRef, Pass, Request, Service};
use std::time::Instant;

pub struct MqService;

impl MqService {
    pub fn new(_conf: &conf::Conf) -> MqService {
        MqService
    }
}

impl Service for MqService {
    fn call(
        &mut self,
        _op: Op,
        _req: &Request<'_>,
        _who: ConnRef,
        _pass: &mut Pass<'_, '_>,
    ) -> Outcome {
        Outcome::Reply(Response::empty(501))
    }
    fn bad_request(&self, why: &str) -> Response {
        Response::with_body(
            400,
            crate::http::TEXT_PLAIN,
            format!("{why}\n").into_bytes(),
        )
    }
    fn park_timeout(&mut self, _who: ConnRef, _pass: &mut Pass<'_, '_>) -> Response {
        Response::empty(404)
    }
    fn park_cancel(&mut self, _who: ConnRef) {}
    fn tick(&mut self, _pass: &mut Pass<'_, '_>, _wakeups: &mut Vec<(ConnRef, Response)>) {}
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    fn retire(&mut self, _pass: &mut Pass<'_, '_>, _wakeups: &mut Vec<(ConnRef, Response)>) {}
}
