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
//! - The tester's search is an unmemoized depth-first search: quick to find a linearization
//!   when there is one, but exponential on a history that has none (every order of
//!   concurrent reads is tried again at each later step; a few hundred ops per key already
//!   take minutes). So its spec counts steps and refuses every step past a budget, which
//!   makes it end, and when it finds no linearization a second search decides: Lowe's
//!   just-in-time linearization with memoized configurations (model state, pending ops
//!   already linearized), replaying the events in real-time order. It is linear-time on the
//!   histories tests make, and the completion at which no configuration remains is the op
//!   to report. The two searches must agree; a disagreement is a bug here, and panics.
//! - Either search past its budget gives `Undecided`, never a pass; stateright's also stops
//!   after `STATERIGHT_TIME` and leaves the verdict to the JIT search. The JIT search too is
//!   exponential in the unknown ops pending together (each may or may not have happened):
//!   a cluster test keeps them to a few dozen per key.

use super::{apply, Call, Key, OpRecord, Outcome, Record, Ret, Violation};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Steps (model applications) the search may take per key and per prefix tried.
pub const DEFAULT_STEP_BUDGET: u64 = 1_000_000;

/// How long stateright's search may take on one key before the JIT search decides alone.
/// Stateright clones the remaining history at each step: a few hundred ops with a few dozen
/// unknown among them take it about a second in a debug build.
const STATERIGHT_TIME: Duration = Duration::from_secs(3);

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

/// Runs both searches to the end on every key and says where they disagree (a bug in this
/// file); for the checker's own tests. `Ok` carries how many keys both found linearizable.
pub fn cross_check(history: &super::History) -> Result<usize, String> {
    let mut linearizable = 0;
    for (key, ops) in history.by_key() {
        let events = events(&ops);
        let by_stateright = run(&ops, &events, DEFAULT_STEP_BUDGET);
        let by_jit = jit(&ops, &events, DEFAULT_STEP_BUDGET);
        match (by_stateright, &by_jit) {
            (Verdict::Linearizable, Jit::Linearizable) => linearizable += 1,
            (Verdict::Linearizable, Jit::Stuck(_))
            | (Verdict::NotLinearizable, Jit::Linearizable) => {
                return Err(format!(
                    "{key}: stateright {by_stateright:?}, JIT {by_jit:?}"
                ))
            }
            // Undecided by either (stateright gives up on most refutations): no disagreement.
            _ => {}
        }
    }
    Ok(linearizable)
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
    let verdict = run(ops, &events, budget);
    if verdict == Verdict::Linearizable {
        return Ok(());
    }
    match (jit(ops, &events, budget), verdict) {
        (Jit::Linearizable, Verdict::Undecided) => Ok(()),
        (Jit::Linearizable, _) => {
            panic!("{key}: stateright finds no linearization, the JIT search one")
        }
        (Jit::Stuck(i), _) => Err(Violation::NotLinearizable {
            key,
            op: Box::new(ops[i].clone()),
            context: context(ops, &ops[i]),
        }),
        (Jit::Undecided, _) => Err(Violation::Undecided {
            key,
            ops: ops.len(),
            budget,
        }),
    }
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
    let deadline = Instant::now() + STATERIGHT_TIME;
    let spec = Spec {
        rec: None,
        steps: steps.clone(),
        budget,
        deadline,
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
    } else if steps.get() >= budget || Instant::now() >= deadline {
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
    deadline: Instant,
}

impl SequentialSpec for Spec {
    type Op = Call;
    type Ret = Ret;

    fn invoke(&mut self, op: &Call) -> Ret {
        self.steps.set(self.steps.get() + 1);
        apply(&mut self.rec, op)
    }

    fn is_valid_step(&mut self, op: &Call, ret: &Ret) -> bool {
        // The clock is read once per 1024 steps: it costs more than a model step.
        let late = self.steps.get().is_multiple_of(1024) && Instant::now() >= self.deadline;
        if late {
            self.steps.set(self.budget);
        }
        self.steps.get() < self.budget && self.invoke(op) == *ret
    }
}

#[derive(Debug)]
enum Jit {
    Linearizable,
    /// No configuration explains the completion of `ops[i]`.
    Stuck(usize),
    Undecided,
}

/// A point of the just-in-time search: the record after the ops linearized so far, and which
/// of the pending ops (invoked, not yet returned; unknown ones stay pending) are among them.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Config {
    rec: Option<Record>,
    linearized: BTreeSet<usize>,
}

/// Lowe's just-in-time linearization: at each completion, every configuration is extended by
/// pending ops (each with its recorded answer, an unknown one with any) until the completing
/// op is linearized; configurations that cannot are dropped, equal ones merged.
fn jit(ops: &[OpRecord], events: &[Event], budget: u64) -> Jit {
    let mut configs: HashSet<Config> = HashSet::from([Config {
        rec: None,
        linearized: BTreeSet::new(),
    }]);
    let mut pending: BTreeSet<usize> = BTreeSet::new();
    let mut steps = 0u64;
    for event in events {
        let done = match *event {
            Event::Invoke(i) => {
                pending.insert(i);
                continue;
            }
            Event::Return(i) => i,
        };
        let mut next = HashSet::new();
        let mut seen: HashSet<Config> = configs.iter().cloned().collect();
        let mut stack: Vec<Config> = configs.into_iter().collect();
        while let Some(c) = stack.pop() {
            if c.linearized.contains(&done) {
                let mut kept = c;
                kept.linearized.remove(&done);
                next.insert(kept);
                continue;
            }
            for &p in &pending {
                if c.linearized.contains(&p) {
                    continue;
                }
                steps += 1;
                if steps > budget {
                    return Jit::Undecided;
                }
                let mut rec = c.rec.clone();
                let ret = apply(&mut rec, &ops[p].op.call);
                if ops[p].ret().is_some_and(|r| *r != ret) {
                    continue;
                }
                // An unknown op that would change nothing here (a CAS that mismatches) is
                // better left pending: linearized, it could not be used later.
                if ops[p].indefinite() && rec == c.rec {
                    continue;
                }
                let mut linearized = c.linearized.clone();
                if p != done {
                    linearized.insert(p);
                    let ext = Config { rec, linearized };
                    if seen.insert(ext.clone()) {
                        stack.push(ext);
                    }
                } else {
                    next.insert(Config { rec, linearized });
                }
            }
        }
        pending.remove(&done);
        if next.is_empty() {
            return Jit::Stuck(done);
        }
        configs = next;
    }
    Jit::Linearizable
}
