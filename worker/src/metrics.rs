//! Counters for `/metrics`, added up over every worker.
//!
//! Choice: one anonymous shared memory mapping (`MAP_SHARED | MAP_ANONYMOUS`), created by the
//! master before the first fork and inherited by every worker, holding one region of atomic
//! counters per worker slot. A worker bumps only its own region (uncontended atomics, no
//! syscall, nothing on the request path touches LMDB); whichever worker serves `/metrics` adds
//! up all regions. Counting in the LMDB environment instead would turn every request into a
//! write. A respawned worker keeps its slot's region, so counters never go backwards; during a
//! reload an old and a new worker may share a region, which atomics make harmless. The same
//! mapping ends with the daemon's fail-stop flag ([`SharedMetrics::fail_state`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use storage::FailState;

/// Regions in the mapping; slot `s` uses region `s % REGIONS`.
const REGIONS: usize = 64;

/// Status codes counted one by one; anything else counts as "other".
const STATUSES: [u16; 17] = [
    200, 400, 401, 403, 404, 405, 408, 409, 412, 413, 414, 431, 500, 501, 503, 507, 0,
];
/// Route labels: index `i < routes.len()` is that route's path; then "other".
const LABELS: usize = 64;

/// Upper bounds (microseconds) of the latency histogram's buckets.
const LATENCY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 10_000_000,
];
/// Upper bounds of the group-commit batch size histogram.
const BATCH_BOUNDS: [u64; 8] = [1, 2, 5, 10, 25, 50, 100, 250];
/// Upper bounds (microseconds) of the commit latency histogram.
const COMMIT_BOUNDS_US: [u64; 8] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000];

/// One worker slot's counters. Plain atomics: valid in memory shared between processes.
#[repr(C)]
struct Region {
    requests: [[AtomicU64; STATUSES.len()]; LABELS],
    latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    latency_sum_us: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    restarts: AtomicU64,
    commits: AtomicU64,
    commit_writes: AtomicU64,
    commit_us: AtomicU64,
    batch: [AtomicU64; BATCH_BOUNDS.len() + 1],
    commit_latency: [AtomicU64; COMMIT_BOUNDS_US.len() + 1],
    /// Writes refused for a full map, and for a full disk.
    map_full: AtomicU64,
    disk_full: AtomicU64,
    /// How long each step of the passes took (`pass_timings`).
    steps: crate::pass_timings::Steps,
}

/// The shared counters. Cheap to copy: a pointer into the inherited mapping.
#[derive(Clone, Copy)]
pub struct SharedMetrics {
    base: *mut Region,
    region: usize,
}

/// A request label: the index of its route in the mode's table, or `OTHER` (auth failures,
/// unknown paths, framing errors).
pub type Label = usize;
pub const OTHER: Label = LABELS - 1;

impl SharedMetrics {
    /// Maps the zeroed shared region; call once in the master, before forking.
    pub fn create() -> std::io::Result<SharedMetrics> {
        let len = REGIONS * std::mem::size_of::<Region>() + std::mem::size_of::<FailState>();
        // SAFETY: an anonymous shared mapping with no address hint; the kernel returns
        // zeroed, page-aligned memory or MAP_FAILED, which is checked. It is never unmapped,
        // so every pointer derived from it stays valid for the life of the process.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMetrics {
            base: ptr.cast(),
            region: 0,
        })
    }

    /// The handle a worker of `slot` writes through.
    pub fn for_slot(self, slot: usize) -> SharedMetrics {
        SharedMetrics {
            base: self.base,
            region: slot % REGIONS,
        }
    }

    fn regions(&self) -> &[Region] {
        // SAFETY: `base` points to REGIONS zero-initialised `Region`s (all-zero is a valid
        // value of every atomic) that live as long as the process; only atomics are accessed.
        unsafe { std::slice::from_raw_parts(self.base, REGIONS) }
    }

    /// The daemon's fail-stop state (`storage::FailStop`), after the regions: every worker,
    /// respawned ones too, sees the flag a failed flush sets.
    pub fn fail_state(&self) -> &'static FailState {
        // SAFETY: the mapping holds REGIONS regions and then one zero-initialised
        // `FailState` (atomics only, valid when all zero); `Region` is 8-aligned, so the end
        // of the regions is aligned for it. The mapping is never unmapped: 'static holds.
        unsafe { &*self.base.add(REGIONS).cast::<FailState>() }
    }

    fn mine(&self) -> &Region {
        &self.regions()[self.region]
    }

    /// The master counts a respawn of `slot`'s worker.
    pub fn worker_restarted(&self, slot: usize) {
        self.regions()[slot % REGIONS]
            .restarts
            .fetch_add(1, Relaxed);
    }

    pub fn request(&self, label: Label, status: u16, micros: u64) {
        let r = self.mine();
        let s = STATUSES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(STATUSES.len() - 1);
        r.requests[label.min(OTHER)][s].fetch_add(1, Relaxed);
        r.latency[bucket(&LATENCY_BOUNDS_US, micros)].fetch_add(1, Relaxed);
        r.latency_sum_us.fetch_add(micros, Relaxed);
    }

    pub fn bytes_in(&self, n: usize) {
        self.mine().bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub fn bytes_out(&self, n: usize) {
        self.mine().bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// This slot's step histograms (`pass_timings`), for any thread of the worker.
    pub fn steps(&self) -> &'static crate::pass_timings::Steps {
        // SAFETY: `region < REGIONS` and the mapping holds REGIONS zero-initialised regions
        // (atomics only), never unmapped: the reference is valid for the life of the process
        // and, all atomics, may be shared between threads.
        unsafe { &(*self.base.add(self.region)).steps }
    }

    pub fn connection_opened(&self) {
        self.mine().opened.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.mine().closed.fetch_add(1, Relaxed);
    }

    pub fn commit(&self, stats: storage::CommitStats) {
        let r = self.mine();
        r.commits.fetch_add(1, Relaxed);
        r.commit_writes.fetch_add(stats.writes as u64, Relaxed);
        r.commit_us.fetch_add(stats.micros, Relaxed);
        r.batch[bucket(&BATCH_BOUNDS, stats.writes as u64)].fetch_add(1, Relaxed);
        r.commit_latency[bucket(&COMMIT_BOUNDS_US, stats.micros)].fetch_add(1, Relaxed);
        r.map_full.fetch_add(stats.map_full, Relaxed);
        r.disk_full.fetch_add(stats.disk_full, Relaxed);
    }

    /// Writes refused with `507` outside a commit's figures: for a full map, for a full disk.
    pub fn refusals(&self, map_full: u64, disk_full: u64) {
        let r = self.mine();
        r.map_full.fetch_add(map_full, Relaxed);
        r.disk_full.fetch_add(disk_full, Relaxed);
    }

    /// Appends the Prometheus text of every counter, summed over all regions; `paths` are
    /// the route labels (the mode's route table, in order).
    pub fn render(&self, paths: &[&str], out: &mut String) {
        let regions = self.regions();
        let sum = |f: &dyn Fn(&Region) -> &AtomicU64| -> u64 {
            regions.iter().map(|r| f(r).load(Relaxed)).sum()
        };
        out.push_str("# HELP huststore_requests_total Requests answered, by path and status.\n");
        out.push_str("# TYPE huststore_requests_total counter\n");
        for label in 0..LABELS {
            let path = paths.get(label).copied().unwrap_or("other");
            if label < OTHER && label >= paths.len() {
                continue;
            }
            for (s, status) in STATUSES.iter().enumerate() {
                let n = sum(&|r| &r.requests[label][s]);
                if n == 0 {
                    continue;
                }
                let status = if *status == 0 {
                    "other".to_string()
                } else {
                    status.to_string()
                };
                let _ = writeln!(
                    out,
                    "huststore_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}"
                );
            }
        }
        histogram(
            out,
            "huststore_request_duration_seconds",
            "Time from reading a request to writing its reply.",
            &LATENCY_BOUNDS_US,
            1e6,
            &|i| sum(&|r| &r.latency[i]),
            sum(&|r| &r.latency_sum_us) as f64 / 1e6,
        );
        counter(
            out,
            "huststore_received_bytes_total",
            "Bytes read from clients.",
            sum(&|r| &r.bytes_in),
        );
        counter(
            out,
            "huststore_sent_bytes_total",
            "Bytes written to clients.",
            sum(&|r| &r.bytes_out),
        );
        let opened = sum(&|r| &r.opened);
        let closed = sum(&|r| &r.closed);
        let _ = write!(
            out,
            "# HELP huststore_open_connections Client connections open now.\n\
             # TYPE huststore_open_connections gauge\nhuststore_open_connections {}\n",
            opened.saturating_sub(closed)
        );
        counter(
            out,
            "huststore_worker_restarts_total",
            "Workers respawned after dying unasked.",
            sum(&|r| &r.restarts),
        );
        counter(
            out,
            "huststore_commits_total",
            "Group commits (one per loop pass with writes).",
            sum(&|r| &r.commits),
        );
        histogram(
            out,
            "huststore_commit_batch_writes",
            "Writes per group commit.",
            &BATCH_BOUNDS,
            1.0,
            &|i| sum(&|r| &r.batch[i]),
            sum(&|r| &r.commit_writes) as f64,
        );
        histogram(
            out,
            "huststore_commit_duration_seconds",
            "Time of a group commit, fsync included.",
            &COMMIT_BOUNDS_US,
            1e6,
            &|i| sum(&|r| &r.commit_latency[i]),
            sum(&|r| &r.commit_us) as f64 / 1e6,
        );
        let _ = write!(
            out,
            "# HELP huststore_store_full_total Writes refused with 507 for want of room, by what was full.\n\
             # TYPE huststore_store_full_total counter\n\
             huststore_store_full_total{{reason=\"map\"}} {}\n\
             huststore_store_full_total{{reason=\"disk\"}} {}\n",
            sum(&|r| &r.map_full),
            sum(&|r| &r.disk_full)
        );
        for (h, (name, help)) in crate::pass_timings::HISTOGRAMS.iter().enumerate() {
            histogram(
                out,
                name,
                help,
                &crate::pass_timings::BOUNDS_US,
                1e6,
                &|i| sum(&|r| &r.steps.hists[h].buckets[i]),
                sum(&|r| &r.steps.hists[h].sum_ns) as f64 / 1e9,
            );
        }
    }
}

fn bucket(bounds: &[u64], value: u64) -> usize {
    bounds
        .iter()
        .position(|&b| value <= b)
        .unwrap_or(bounds.len())
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
    );
}

/// A Prometheus histogram from per-bucket (not cumulative) counts.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[u64],
    divisor: f64,
    count: &dyn Fn(usize) -> u64,
    sum: f64,
) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
    let mut cumulative = 0;
    for (i, b) in bounds.iter().enumerate() {
        cumulative += count(i);
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *b as f64 / divisor
        );
    }
    cumulative += count(bounds.len());
    let _ = write!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {cumulative}\n"
    );
}

/// A gauge line, for the modes' own figures.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_over_regions_and_render() {
        let m = SharedMetrics::create().unwrap();
        let a = m.for_slot(0);
        let b = m.for_slot(1);
        a.request(0, 200, 50);
        b.request(0, 200, 700);
        b.request(OTHER, 404, 20);
        a.bytes_in(10);
        b.bytes_in(5);
        a.connection_opened();
        a.connection_opened();
        b.connection_closed();
        m.worker_restarted(3);
        a.commit(storage::CommitStats {
            writes: 30,
            micros: 800,
            map_full: 2,
            disk_full: 1,
        });
        // A refused commit's refusals, counted by another worker's slot.
        b.refusals(1, 2);
        let mut out = String::new();
        let paths: Vec<&str> = crate::routes::KV_ROUTES.iter().map(|r| r.path).collect();
        m.render(&paths, &mut out);
        assert!(
            out.contains("huststore_requests_total{path=\"/put\",status=\"200\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("huststore_requests_total{path=\"other\",status=\"404\"} 1\n"));
        assert!(out.contains("huststore_received_bytes_total 15\n"));
        assert!(out.contains("huststore_store_full_total{reason=\"map\"} 3\n"));
        assert!(out.contains("huststore_store_full_total{reason=\"disk\"} 3\n"));
        assert!(out.contains("huststore_open_connections 1\n"));
        assert!(out.contains("huststore_worker_restarts_total 1\n"));
        assert!(out.contains("huststore_request_duration_seconds_bucket{le=\"0.0001\"} 2\n"));
        assert!(out.contains("huststore_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("huststore_commit_batch_writes_bucket{le=\"50\"} 1\n"));
        assert!(out.contains("huststore_commit_batch_writes_sum 30\n"));
    }
}
