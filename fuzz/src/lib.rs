//! The checks the fuzz targets run, one function per target (`checks.rs`, shared with the
//! corpus replay of `tests/fuzz_corpus.rs` in the main workspace).

mod checks;
pub use checks::*;
