//! Fuzz target `conf`: libFuzzer's inputs through [`huststore_fuzz::conf`] (the decoder and its
//! invariants are in `fuzz/src/checks.rs`; the corpus in `fuzz/corpus/conf/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huststore_fuzz::conf(data));
