//! Fuzz target `peer_frame`: libFuzzer's inputs through [`huststore_fuzz::peer_frame`] (the decoder and its
//! invariants are in `fuzz/src/checks.rs`; the corpus in `fuzz/corpus/peer_frame/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huststore_fuzz::peer_frame(data));
