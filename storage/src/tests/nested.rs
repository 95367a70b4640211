//! The suite with `write_map` off: every request in a nested transaction.

use super::*;

/// Whether this suite's stores use `write_map`.
pub(crate) const WRITE_MAP: bool = false;

pub(crate) fn options(dir: &Path, map_size: u64, cache_size: u64) -> StoreOptions {
    options_with(dir, map_size, cache_size, WRITE_MAP)
}

/// A store with roomy limits (64 MiB each).
pub(crate) fn open(dir: &TempDir) -> Store {
    Store::open(&options(dir.path(), 64 << 20, 64 << 20)).expect("open store")
}

#[path = "atomic.rs"]
mod atomic;
#[path = "cache.rs"]
mod cache;
#[path = "capacity.rs"]
mod capacity;
#[path = "commands.rs"]
mod commands;
#[path = "group_state.rs"]
mod group_state;
#[path = "kv.rs"]
mod kv;
#[path = "listing.rs"]
mod listing;
#[path = "model.rs"]
mod model;
#[path = "slots.rs"]
mod slots;
#[path = "stats.rs"]
mod stats;
#[path = "tables.rs"]
mod tables;
