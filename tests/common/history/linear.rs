//! The per-key linearizability check: each key's ops are fed, in real-time order, to
//! stateright's `LinearizabilityTester` with the huststore record model as its
//! `SequentialSpec`. Linearizability is local (Herlihy and Wing), so checking each key alone
//! is exactly checking the whole history.
//!
//! What is built on top of stateright, and why:
//! - An unknown op is left in flight forever: the tester then places it anywhere after its
//!   invocation, or nowhere, which is Jepsen's `:info`. The tester allows one op in flight per
//!   thread and only as that thread's last, so the client's next op goes to a fresh thread
//!   ("lane"), as Jepsen gives a crashed process a new id.
//! - An unknown read is dropped: it changes nothing and constrains nothing, and left in flight
//!   it would only multiply the search.
//! - The tester's search is an unmemoized depth-first search, exponential on a history that
//!   is not linearizable (every ordering of concurrent reads is tried again at each step). The
//!   spec counts its steps and refuses every step past a budget, so the search always ends:
//!   past the budget the verdict is `Undecided`, never a false pass.
//! - For a readable verdict, the shortest failing prefix of the key's events is found by
//!   bisection (a prefix of a history is a history whose unfinished ops are in flight), and
//!   the completion that ends it is reported with the ops around it.

use super::{apply, Call, Key, OpRecord, Outcome, Record, Ret, Violation};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Steps (model applications) the search may take per key and per prefix tried.
pub const DEFAULT_STEP_BUDGET: u64 = 1_000_000;

/// The search recurses once per op: give it a stack that no history of a test outgrows.
const STACK: usize = 256 << 20;

/// Checks that each key's history is linearizable (see the module doc), with the default
/// budget.
pub fn check_key_histories(history: &super::History) -> Result<(), Violation> {
    check_key_histories_with_budget(history, DEFAULT_STEP_BUDGET)
}

/// `check_key_histories` with `budget` search steps per key.
pub fn check_key_histories_with_budget(
    history: &super::History,
    budget: u64,
) -> Result<(), Violation> {
    let keys = history.by_key();
    std::thread::Builder::new()
        .name("linearizability".into())
        .stack_size(STACK)
        .spawn(move || {
            for (key, ops) in keys {
                check_key(key, &ops, budget)?;
            }
            Ok(())
        })
        .expect("spawn the linearizability checker")
        .join()
        .expect("the linearizability checker panicked")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Linearizable,
    NotLinearizable,
    Undecided,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Invoke(usize),
    Return(usize),
}

fn check_key(key: Key, ops: &[OpRecord], budget: u64) -> Result<(), Violation> {
    let events = events(ops);
    match run(ops, &events, budget) {
        Verdict::Linearizable => return Ok(()),
        Verdict::Undecided => {
            return Err(Violation::Undecided {
                key,
                ops: ops.len(),
                budget,
            })
        }
        Verdict::NotLinearizable => {}
    }
    // The empty prefix passes and the whole fails; an invocation alone never makes a prefix
    // fail (its op may be left out), so the shortest failing prefix ends with a completion.
    let (mut lo, mut hi) = (0, events.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if run(ops, &events[..mid], budget) == Verdict::Linearizable {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let culprit = match events[hi - 1] {
        Event::Return(i) | Event::Invoke(i) => &ops[i],
    };
    Err(Violation::NotLinearizable {
        key,
        op: Box::new(culprit.clone()),
        context: context(ops, culprit),
    })
}

/// Invocations and definite completions in real-time order; failed ops and unknown reads
/// left out (module doc).
fn events(ops: &[OpRecord]) -> Vec<Event> {
    let mut timed = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match &op.outcome {
            Outcome::Failed => {}
            Outcome::Unknown | Outcome::Pending if op.op.call == Call::Get => {}
            Outcome::Unknown | Outcome::Pending => timed.push((op.inv_seq, Event::Invoke(i))),
            Outcome::Ok(_) => {
                timed.push((op.inv_seq, Event::Invoke(i)));
                let done = op.done_seq.expect("a completed op has a completion");
                timed.push((done, Event::Return(i)));
            }
        }
    }
    timed.sort_by_key(|(seq, _)| *seq);
    timed.into_iter().map(|(_, e)| e).collect()
}

fn run(ops: &[OpRecord], events: &[Event], budget: u64) -> Verdict {
    let steps = Rc::new(Cell::new(0));
    let spec = Spec {
        rec: None,
        steps: steps.clone(),
        budget,
    };
    let mut tester = LinearizabilityTester::new(spec);
    let mut lane_of_client: HashMap<usize, usize> = HashMap::new();
    let mut lane_of_op = HashMap::new();
    let mut busy: Vec<bool> = Vec::new();
    for event in events {
        let fed = match *event {
            Event::Invoke(i) => {
                let lane = match lane_of_client.get(&ops[i].client) {
                    Some(&l) if !busy[l] => l,
                    _ => {
                        busy.push(false);
                        busy.len() - 1
                    }
                };
                busy[lane] = true;
                lane_of_client.insert(ops[i].client, lane);
                lane_of_op.insert(i, lane);
                tester.on_invoke(lane, ops[i].op.call.clone()).map(|_| ())
            }
            Event::Return(i) => {
                let lane = lane_of_op[&i];
                busy[lane] = false;
                let ret = ops[i].ret().expect("only definite answers return").clone();
                tester.on_return(lane, ret).map(|_| ())
            }
        };
        // Lanes never hold two ops in flight, so the tester cannot refuse an event.
        fed.expect("the lanes fed the tester a malformed history");
    }
    if tester.serialized_history().is_some() {
        Verdict::Linearizable
    } else if steps.get() >= budget {
        Verdict::Undecided
    } else {
        Verdict::NotLinearizable
    }
}

/// The ops overlapping `culprit`, and the last four that completed before it began.
fn context(ops: &[OpRecord], culprit: &OpRecord) -> Vec<OpRecord> {
    let live = || {
        ops.iter()
            .filter(|o| o.outcome != Outcome::Failed && o.id != culprit.id)
    };
    let mut before: Vec<&OpRecord> = live().filter(|o| o.precedes(culprit)).collect();
    before.sort_by_key(|o| o.done_seq);
    let first = before.len().saturating_sub(4);
    let mut picked: BTreeMap<u64, OpRecord> = before[first..]
        .iter()
        .map(|o| (o.inv_seq, (*o).clone()))
        .collect();
    for o in live().filter(|o| !o.precedes(culprit) && !culprit.precedes(o)) {
        picked.insert(o.inv_seq, o.clone());
    }
    picked.into_values().collect()
}

/// One huststore record as stateright's reference object, with the step counter that bounds
/// the search (module doc).
#[derive(Clone, Debug)]
struct Spec {
    rec: Option<Record>,
    steps: Rc<Cell<u64>>,
    budget: u64,
}

impl SequentialSpec for Spec {
    type Op = Call;
    type Ret = Ret;

    fn invoke(&mut self, op: &Call) -> Ret {
        self.steps.set(self.steps.get() + 1);
        apply(&mut self.rec, op)
    }

    fn is_valid_step(&mut self, op: &Call, ret: &Ret) -> bool {
        self.steps.get() < self.budget && self.invoke(op) == *ret
    }
}
