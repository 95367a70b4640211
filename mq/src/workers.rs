//! `/worker` (4.8): the consumers seen on a queue recently, in memory only.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A worker seen longer ago than this (seconds) is no longer listed.
pub const WORKER_MAX_AGE: u64 = 512;
/// Names tracked per queue; while full, new names wait for old ones to age out.
pub const WORKER_MAX_NAMES: usize = 1024;

/// One queue's recent consumers: name → unix seconds of its last `get`/`evget`.
#[derive(Debug, Default)]
pub struct WorkerList {
    seen: HashMap<String, u64>,
}

impl WorkerList {
    /// Records that `worker` asked at `now` (unix seconds).
    pub fn record(&mut self, worker: &str, now: u64) {
        if let Some(t) = self.seen.get_mut(worker) {
            *t = now;
            return;
        }
        if self.seen.len() >= WORKER_MAX_NAMES {
            self.seen
                .retain(|_, t| now.saturating_sub(*t) <= WORKER_MAX_AGE);
            if self.seen.len() >= WORKER_MAX_NAMES {
                return;
            }
        }
        self.seen.insert(worker.to_string(), now);
    }

    /// The JSON array of the spec: workers seen in the last 512 s, sorted by name.
    pub fn json(&self, now: u64) -> String {
        let mut list: Vec<(&String, &u64)> = self
            .seen
            .iter()
            .filter(|(_, t)| now.saturating_sub(**t) <= WORKER_MAX_AGE)
            .collect();
        list.sort();
        let mut out = String::with_capacity(2 + list.len() * 40);
        out.push('[');
        for (i, (w, t)) in list.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Worker names are visible ASCII without `"` or `\` (checked by the worker crate):
            // nothing to escape.
            let _ = write!(out, "{{\"w\":\"{w}\",\"t\":{t}}}");
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_recent_and_bounded() {
        let mut l = WorkerList::default();
        assert_eq!(l.json(1000), "[]");
        l.record("b", 1000);
        l.record("a", 900);
        l.record("old", 100);
        assert_eq!(l.json(1000), r#"[{"w":"a","t":900},{"w":"b","t":1000}]"#);
        l.record("a", 1001);
        assert_eq!(l.json(1001), r#"[{"w":"a","t":1001},{"w":"b","t":1000}]"#);
        let mut full = WorkerList::default();
        for i in 0..WORKER_MAX_NAMES {
            full.record(&format!("w{i}"), 10);
        }
        full.record("late", 11);
        assert!(!full.json(11).contains("late"));
        // Once the old names age out, new ones are recorded again.
        full.record("late", 10 + WORKER_MAX_AGE + 1);
        assert_eq!(
            full.json(10 + WORKER_MAX_AGE + 1),
            format!(r#"[{{"w":"late","t":{}}}]"#, 10 + WORKER_MAX_AGE + 1)
        );
    }
}
