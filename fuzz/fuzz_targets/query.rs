//! Fuzz target `query`: libFuzzer's inputs through [`huststore_fuzz::query`] (the decoder and its
//! invariants are in `fuzz/src/checks.rs`; the corpus in `fuzz/corpus/query/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huststore_fuzz::query(data));
