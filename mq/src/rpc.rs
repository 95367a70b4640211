//! Worker RPC (4.16-4.18), memory only: tasks from `/do_get` callers wait FIFO for workers
//! parked in `/do_post`, and workers wait FIFO for tasks. A task has one-time token, handed to
//! the worker that claims it; the caller waits for the result under two successive deadlines
//! (until the claim, then until the result).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

struct Task<W> {
    name: String,
    /// Taken out when the task is handed to a worker.
    args: Vec<u8>,
    caller: W,
    /// Place in the FIFO of unassigned tasks; `None` once claimed.
    arrival: Option<u64>,
    deadline: Instant,
}

/// A task handed to a worker.
#[derive(Debug, PartialEq, Eq)]
pub struct Claimed {
    pub name: String,
    pub token: u64,
    pub args: Vec<u8>,
}

/// The RPC tables.
pub struct Rpc<W> {
    tasks: HashMap<u64, Task<W>>,
    /// Unassigned tasks by arrival → token.
    unassigned: BTreeMap<u64, u64>,
    /// Parked workers by arrival.
    workers: BTreeMap<u64, W>,
    /// Task deadlines (entries whose task moved on or went are skipped).
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    next_token: u64,
    next_arrival: u64,
    task_slots: usize,
    worker_slots: usize,
    timeout: Duration,
}

impl<W: Copy> Rpc<W> {
    /// `first_token`: unique across restarts, e.g. the start time in microseconds.
    pub fn new(
        task_slots: usize,
        worker_slots: usize,
        timeout: Duration,
        first_token: u64,
    ) -> Self {
        Rpc {
            tasks: HashMap::new(),
            unassigned: BTreeMap::new(),
            workers: BTreeMap::new(),
            timers: BinaryHeap::new(),
            next_token: first_token,
            next_arrival: 0,
            task_slots,
            worker_slots,
            timeout,
        }
    }

    /// A new task from `caller`; `None` when every slot is taken.
    pub fn call(&mut self, now: Instant, caller: W, name: &str, args: Vec<u8>) -> Option<u64> {
        if self.tasks.len() >= self.task_slots {
            return None;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        let deadline = now + self.timeout;
        self.tasks.insert(
            token,
            Task {
                name: name.to_string(),
                args,
                caller,
                arrival: Some(arrival),
                deadline,
            },
        );
        self.unassigned.insert(arrival, token);
        self.timers.push(Reverse((deadline, token)));
        Some(token)
    }

    /// Hands the oldest unassigned task to a worker; its result is due within the timeout.
    fn assign_oldest(&mut self, now: Instant) -> Option<Claimed> {
        let (_, token) = self.unassigned.pop_first()?;
        let task = self.tasks.get_mut(&token)?;
        task.arrival = None;
        task.deadline = now + self.timeout;
        self.timers.push(Reverse((task.deadline, token)));
        Some(Claimed {
            name: task.name.clone(),
            token,
            args: std::mem::take(&mut task.args),
        })
    }

    /// A claim that arrives with no other worker waiting takes a task at once, if any.
    pub fn claim_now(&mut self, now: Instant) -> Option<Claimed> {
        if !self.workers.is_empty() {
            return None;
        }
        self.assign_oldest(now)
    }

    /// Parks a worker; `None` when every worker slot is taken. Returns its place in line.
    pub fn park_worker(&mut self, who: W) -> Option<u64> {
        if self.workers.len() >= self.worker_slots {
            return None;
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.workers.insert(arrival, who);
        Some(arrival)
    }

    /// True when a parked worker and an unassigned task are both waiting.
    pub fn can_match(&self) -> bool {
        !self.workers.is_empty() && !self.unassigned.is_empty()
    }

    /// Pairs parked workers with unassigned tasks, oldest first.
    pub fn match_waiting(&mut self, now: Instant, out: &mut Vec<(W, Claimed)>) {
        while self.can_match() {
            let Some(claimed) = self.assign_oldest(now) else {
                break;
            };
            let Some((_, worker)) = self.workers.pop_first() else {
                break;
            };
            out.push((worker, claimed));
        }
    }

    /// A worker's result: the caller to answer, if the token belongs to a claimed task.
    pub fn reply(&mut self, token: u64) -> Option<W> {
        match self.tasks.get(&token) {
            Some(t) if t.arrival.is_none() => self.tasks.remove(&token).map(|t| t.caller),
            _ => None,
        }
    }

    /// Tasks past their deadline: removed, callers returned.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<W>) {
        while let Some(&Reverse((at, token))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.tasks.get(&token).is_some_and(|t| t.deadline == at) {
                if let Some(caller) = self.remove_task(token) {
                    out.push(caller);
                }
            }
        }
    }

    /// Drops a task (its caller left or timed out); its token is dead from now on.
    pub fn remove_task(&mut self, token: u64) -> Option<W> {
        let task = self.tasks.remove(&token)?;
        if let Some(a) = task.arrival {
            self.unassigned.remove(&a);
        }
        Some(task.caller)
    }

    /// Drops a parked worker.
    pub fn remove_worker(&mut self, arrival: u64) -> Option<W> {
        self.workers.remove(&arrival)
    }

    /// The earliest task deadline (possibly one that no longer counts).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// (unassigned, assigned, slots).
    pub fn task_counts(&self) -> (usize, usize, usize) {
        let unassigned = self.unassigned.len();
        (unassigned, self.tasks.len() - unassigned, self.task_slots)
    }

    /// (parked workers, slots).
    pub fn worker_counts(&self) -> (usize, usize) {
        (self.workers.len(), self.worker_slots)
    }

    /// Empties everything (retiring): every caller and every parked worker.
    pub fn drain(&mut self) -> (Vec<W>, Vec<W>) {
        let callers = self.tasks.drain().map(|(_, t)| t.caller).collect();
        let workers = std::mem::take(&mut self.workers).into_values().collect();
        self.unassigned.clear();
        self.timers.clear();
        (callers, workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_tokens_and_two_deadlines() {
        let t0 = Instant::now();
        let s = Duration::from_secs(10);
        let mut rpc: Rpc<u32> = Rpc::new(2, 1, s, 1000);
        let a = rpc.call(t0, 1, "fib", b"10".to_vec()).unwrap();
        let b = rpc.call(t0, 2, "sum", b"1 2".to_vec()).unwrap();
        assert_ne!(a, b);
        assert_eq!(rpc.call(t0, 3, "x", b"x".to_vec()), None, "slots are full");
        assert_eq!(rpc.task_counts(), (2, 0, 2));
        // Unclaimed tokens are not repliable.
        assert_eq!(rpc.reply(a), None);
        let c = rpc.claim_now(t0 + s / 2).unwrap();
        assert_eq!(
            (c.name.as_str(), c.token, &c.args[..]),
            ("fib", a, &b"10"[..])
        );
        assert_eq!(rpc.task_counts(), (1, 1, 2));
        // At t0 + s the unclaimed task expires; the claimed one has until t0 + 1.5 × s.
        let mut gone = Vec::new();
        rpc.expire(t0 + s, &mut gone);
        assert_eq!(gone, vec![2]);
        assert_eq!(rpc.reply(b), None, "an expired token is dead");
        assert_eq!(rpc.reply(a), Some(1));
        assert_eq!(rpc.reply(a), None, "one-time token");
        assert_eq!(rpc.task_counts(), (0, 0, 2));
    }

    #[test]
    fn parked_workers_take_tasks_in_order() {
        let t0 = Instant::now();
        let mut rpc: Rpc<u32> = Rpc::new(4, 2, Duration::from_secs(5), 1);
        let w1 = rpc.park_worker(10).unwrap();
        rpc.park_worker(11).unwrap();
        assert_eq!(rpc.park_worker(12), None, "worker slots are full");
        assert_eq!(rpc.remove_worker(w1), Some(10));
        rpc.call(t0, 1, "a", b"1".to_vec()).unwrap();
        rpc.call(t0, 2, "b", b"2".to_vec()).unwrap();
        assert_eq!(rpc.claim_now(t0), None, "a parked worker is first in line");
        let mut out = Vec::new();
        rpc.match_waiting(t0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, out[0].1.name.as_str()), (11, "a"));
        assert_eq!(rpc.worker_counts(), (0, 2));
        assert_eq!(rpc.claim_now(t0).map(|c| c.name), Some("b".to_string()));
    }
}
