//! A huststore worker process: one single-threaded mio event loop that speaks HTTP/1.1 on the
//! listening sockets it inherited from the master, routes requests through one static table
//! and serves them from the storage (kv mode) or queue (mq mode) crates, committing the writes
//! of each loop pass at once before any of that pass's replies leave.
//!
//! It must never fork, bind or supervise: that is the master's job.

use std::net::TcpListener;
use std::os::fd::OwnedFd;

/// What the master hands a worker after the fork.
pub struct WorkerArgs {
    pub conf: conf::Conf,
    /// The master's listening sockets, inherited across the fork; shared by all workers.
    pub listeners: Vec<TcpListener>,
    /// Slot number in the master's worker table (for log lines).
    pub slot: usize,
    /// Write end of the master's readiness pipe: the worker writes one byte once it serves.
    pub ready: Option<OwnedFd>,
    /// The `/metrics` counters shared by all workers (see [`SharedMetrics`]).
    pub metrics: SharedMetrics,
}

pub use metrics::SharedMetrics;

/// Exit code of a worker that failed to initialise; the master does not respawn it. The
/// cluster helper process exits with the same code for the same reason.
pub const EXIT_FATAL_INIT: i32 = cluster::helper::EXIT_FATAL_INIT;

/// Prepares the data folder before workers start (called by the master, never by a worker):
/// creates it and checks that it is writable; with `empty_cache` (a fresh start, not a reload)
/// also empties the cache folder, since the cache is volatile by contract. The error is one
/// line for the operator.
pub fn prepare(conf: &conf::Conf, empty_cache: bool) -> Result<(), String> {
    let dir = &conf.data_dir;
    let not_writable =
        |e: std::io::Error| format!("data folder {} is not writable: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(not_writable)?;
    let probe = dir.join(".huststore-write-test");
    std::fs::write(&probe, b"ok").map_err(not_writable)?;
    let _ = std::fs::remove_file(&probe);
    let cache = cache_dir(conf);
    if empty_cache {
        match std::fs::remove_dir_all(&cache) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "could not empty the cache folder {}: {e}",
                    cache.display()
                ))
            }
        }
    }
    for d in [store_dir(conf), cache] {
        std::fs::create_dir_all(&d)
            .map_err(|e| format!("could not create {}: {e}", d.display()))?;
    }
    Ok(())
}

/// Keeps memory the worker frees in its heap instead of giving it back to the kernel at once.
/// glibc trims the heap top past 128 KiB free and serves blocks over a moving threshold with
/// `mmap`, so a pass that builds a hundred 64 KiB replies and frees them paid for every page
/// again in the next pass (page faults, zeroing, cgroup charging: a quarter of the CPU of a
/// 64 KiB GET run). With fixed thresholds: up to 64 MiB stays free at the heap top, blocks up
/// to 4 MiB come from the heap. Other allocators ignore this.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before the worker starts
    // any thread.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// The persistent LMDB environment's folder.
pub fn store_dir(conf: &conf::Conf) -> std::path::PathBuf {
    conf.data_dir.join("db")
}

/// The volatile cache environment's folder (emptied at every fresh start).
pub fn cache_dir(conf: &conf::Conf) -> std::path::PathBuf {
    conf.data_dir.join("cache")
}

/// Runs the worker until it is told to stop. Installs its own signal handling (QUIT: graceful,
/// TERM/INT: now, USR1: reopen logs). Returns the process exit code: 0 after a requested stop,
/// [`EXIT_FATAL_INIT`] when it could not start.
pub fn run(args: WorkerArgs) -> i32 {
    conf::logger::install_panic_hook();
    keep_freed_memory();
    let conf = args.conf;
    let signals = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "worker {}: could not install signal handlers: {e}",
                args.slot
            );
            return EXIT_FATAL_INIT;
        }
    };
    let users = match &conf.auth_basic_user_file {
        Some(path) => match auth::Users::load(path) {
            Ok(u) => Some(u),
            Err(e) => {
                log::error!("{e}");
                return EXIT_FATAL_INIT;
            }
        },
        None => None,
    };
    // Before the store opens: its checkpoint thread takes the first checkpoint at once.
    pass_timings::observe_storage(args.metrics.for_slot(args.slot).steps());
    // The environment is opened here, after the fork: LMDB forbids carrying one across it.
    let store = match storage::Store::open(&storage::StoreOptions {
        data_dir: store_dir(&conf),
        map_size: conf.map_size,
        sync_writes: conf.sync_writes,
        cache_dir: cache_dir(&conf),
        cache_size: conf.cache_size,
        write_map: conf.mode == conf::Mode::Kv,
        fail_stop: storage::FailStop::shared(args.metrics.fail_state())
            .with_faults(conf.debug_fail_flush, conf.debug_fail_checkpoint),
    }) {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "could not open the store in {}: {e}",
                conf.data_dir.display()
            );
            return EXIT_FATAL_INIT;
        }
    };
    let mut service: Box<dyn service::Service> = match conf.mode {
        conf::Mode::Kv => Box::new(kv::KvService::new(&conf)),
        conf::Mode::Mq => match mq_service::MqService::new(&conf, &store, event_loop::unix_ms()) {
            Ok(s) => Box::new(s),
            Err(e) => {
                log::error!(
                    "could not open the queues in {}: {e}",
                    conf.data_dir.display()
                );
                return EXIT_FATAL_INIT;
            }
        },
    };
    let mut event_loop = match event_loop::EventLoop::new(
        args.listeners,
        &conf,
        users,
        signals,
        args.metrics.for_slot(args.slot),
    ) {
        Ok(l) => l,
        Err(e) => {
            log::error!("could not start the event loop: {e}");
            return EXIT_FATAL_INIT;
        }
    };
    if let Some(ready) = args.ready {
        let mut ready = std::fs::File::from(ready);
        // The master only counts the byte; a failure here shows up as a missing worker.
        let _ = std::io::Write::write_all(&mut ready, &[args.slot as u8]);
    }
    conf::notice!("worker {} serving (slot {})", std::process::id(), args.slot);
    let code = event_loop.run(&mut *service, &store);
    if !conf.sync_writes {
        // A clean stop leaves nothing for the next sync_interval to flush.
        if let Err(e) = store.sync() {
            log::error!("could not flush the store to disk: {e}");
        }
    }
    code
}

mod accept_gate;
mod access_log;
mod auth;
mod cluster_link;
mod conn;
mod dispatch;
mod event_loop;
mod flusher;
pub mod http;
mod kv;
mod metrics;
mod mq_service;
mod outq;
mod pass_timings;
pub mod query;
mod routes;
mod service;
mod signals;

/// Tests: a store in `dir` as a kv-mode worker opens one (`write_map`), with `sync_writes off`
/// and small maps.
#[cfg(test)]
pub(crate) fn test_store(dir: &std::path::Path) -> storage::Store {
    storage::Store::open(&storage::StoreOptions {
        data_dir: dir.join("db"),
        map_size: 16 << 20,
        sync_writes: false,
        cache_dir: dir.join("cache"),
        cache_size: 16 << 20,
        write_map: true,
        fail_stop: Default::default(),
    })
    .expect("open the test store")
}
