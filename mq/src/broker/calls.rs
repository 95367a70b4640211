//! RPC through the broker (`mq-api.md` 4.16-4.18): a `do_get` caller parks until a worker
//! claims its task and posts the result; a `do_post` worker parks until a task comes. The
//! tables of tasks and parked workers are `Rpc`'s; this side parks and answers.

use super::{claimed_reply, Broker, Parked};
use crate::{json, Clock, Reply, Step};
use std::hash::Hash;
use std::time::Duration;

impl<W: Copy + Eq + Hash> Broker<W> {
    /// `/do_get` (4.16): a new task, waiting for a worker and then for its result.
    pub fn do_get(&mut self, c: Clock, who: W, name: &str, args: Vec<u8>) -> Step {
        self.at(c);
        if self.retiring {
            return Step::Reply(Reply::Timeout);
        }
        let Some(token) = self.rpc.call(c.now, who, name, args) else {
            return Step::Reply(Reply::Busy);
        };
        self.parked.insert(who, Parked::DoGet { token });
        // The broker enforces both time limits itself (tick); the loop's deadline is only a
        // backstop past the latest possible one.
        Step::Park(self.limits.do_get_timeout * 2 + Duration::from_secs(1))
    }

    /// `/do_post` without `token` (4.17): the oldest task now, or a place in the workers' line.
    pub fn do_post_claim(&mut self, c: Clock, who: W) -> Step {
        self.at(c);
        if let Some(claimed) = self.rpc.claim_now(c.now) {
            return Step::Reply(claimed_reply(claimed));
        }
        if self.retiring {
            return Step::Reply(Reply::Timeout);
        }
        let Some(arrival) = self.rpc.park_worker(who) else {
            return Step::Reply(Reply::Busy);
        };
        self.parked.insert(who, Parked::DoPost { arrival });
        Step::Park(self.limits.do_post_timeout)
    }

    /// `/do_post?token=` (4.17): the result of a claimed task, for its caller.
    pub fn do_post_reply(&mut self, c: Clock, token: u64, result: Vec<u8>) -> Reply {
        self.at(c);
        match self.rpc.reply(token) {
            Some(caller) => {
                self.parked.remove(&caller);
                self.outbox.push((caller, Reply::Message(result)));
                Reply::Done
            }
            None => Reply::NotFound,
        }
    }

    /// `/do_get_status` (4.18).
    pub fn do_get_status(&self) -> Reply {
        let (unassigned, assigned, total) = self.rpc.task_counts();
        Reply::Json(json::do_get_status(unassigned, assigned, total))
    }

    /// `/do_post_status` (4.18).
    pub fn do_post_status(&self) -> Reply {
        let (parked, total) = self.rpc.worker_counts();
        Reply::Json(json::do_post_status(parked, total))
    }
}
