//! Fuzz target `chunked`: libFuzzer's inputs through [`huststore_fuzz::chunked`] (the decoder and its
//! invariants are in `fuzz/src/checks.rs`; the corpus in `fuzz/corpus/chunked/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huststore_fuzz::chunked(data));
