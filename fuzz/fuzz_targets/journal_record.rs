//! Fuzz target `journal_record`: libFuzzer's inputs through [`huststore_fuzz::journal_record`] (the decoder and its
//! invariants are in `fuzz/src/checks.rs`; the corpus in `fuzz/corpus/journal_record/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huststore_fuzz::journal_record(data));
