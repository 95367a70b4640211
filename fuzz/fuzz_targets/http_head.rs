//! Fuzz target `http_head`: libFuzzer's inputs through [`huststore_fuzz::http_head`] (the decoder and its
//! invariants are in `fuzz/src/checks.rs`; the corpus in `fuzz/corpus/http_head/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huststore_fuzz::http_head(data));
