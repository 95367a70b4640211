//! The status objects of spec §3 and §4.18, compact and in the spec's field order.

use crate::codec::{Kind, QueueRec};
use std::fmt::Write as _;

/// Appends one queue status object. `default_timeout` is what a push queue shows.
pub fn queue_status(out: &mut String, name: &str, rec: &QueueRec, default_timeout: u32) {
    // Queue names are `A-Z a-z 0-9 _ : .` only: nothing to escape.
    let (ready, timeout, unacked) = match rec.kind {
        Kind::Normal => (
            [rec.ready(0), rec.ready(1), rec.ready(2)],
            rec.timeout,
            rec.unacked,
        ),
        Kind::Push => ([rec.ci() - rec.si(), 0, 0], default_timeout, 0),
    };
    let _ = write!(
        out,
        "{{\"queue\":\"{name}\",\"type\":{},\"ready\":[{},{},{}],\"max\":{},\"lock\":{},\
         \"si\":{},\"ci\":{},\"tm\":{},\"unacked\":{unacked},\"timeout\":{timeout}}}",
        rec.kind as u8,
        ready[0],
        ready[1],
        ready[2],
        rec.max,
        u8::from(rec.lock),
        rec.si(),
        rec.ci(),
        rec.tm,
    );
}

/// `/do_get_status`.
pub fn do_get_status(unassigned: usize, assigned: usize, total: usize) -> String {
    format!(
        "{{\"unassigned_tasks\":{unassigned},\"assigned_tasks\":{assigned},\"free_tasks\":{},\
         \"total\":{total}}}",
        total.saturating_sub(unassigned + assigned)
    )
}

/// `/do_post_status`.
pub fn do_post_status(parked: usize, total: usize) -> String {
    format!(
        "{{\"cache_workers\":{parked},\"free_workers\":{},\"total\":{total}}}",
        total.saturating_sub(parked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let rec = QueueRec {
            kind: Kind::Normal,
            lock: false,
            max: 0,
            timeout: 5,
            tm: 1_700_000_000,
            read: [4, 0, 0],
            write: [5, 0, 2],
            unacked: 1,
        };
        let mut s = String::new();
        queue_status(&mut s, "test_queue", &rec, 5);
        assert_eq!(
            s,
            r#"{"queue":"test_queue","type":0,"ready":[1,0,2],"max":0,"lock":0,"si":4,"ci":5,"tm":1700000000,"unacked":1,"timeout":5}"#
        );
        let push = QueueRec {
            kind: Kind::Push,
            lock: false,
            max: 0,
            timeout: 9,
            tm: 1_700_000_300,
            read: [0, 0, 0],
            write: [2, 0, 0],
            unacked: 0,
        };
        let mut s = String::new();
        queue_status(&mut s, "news", &push, 5);
        assert_eq!(
            s,
            r#"{"queue":"news","type":1,"ready":[2,0,0],"max":0,"lock":0,"si":0,"ci":2,"tm":1700000300,"unacked":0,"timeout":5}"#
        );
        assert_eq!(
            do_get_status(2, 0, 1024),
            r#"{"unassigned_tasks":2,"assigned_tasks":0,"free_tasks":1022,"total":1024}"#
        );
        assert_eq!(
            do_post_status(0, 1024),
            r#"{"cache_workers":0,"free_workers":1024,"total":1024}"#
        );
    }
}
