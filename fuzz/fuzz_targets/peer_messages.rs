//! Fuzz target `peer_messages`: libFuzzer's inputs through [`huststore_fuzz::peer_messages`] (the decoder and its
//! invariants are in `fuzz/src/checks.rs`; the corpus in `fuzz/corpus/peer_messages/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huststore_fuzz::peer_messages(data));
