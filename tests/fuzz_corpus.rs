//! Replays every committed fuzz corpus input (`fuzz/corpus/<target>/*`) through the same checks
//! the fuzz targets run (`fuzz/src/checks.rs`, included here by path), on the stable toolchain:
//! an input that once crashed a decoder or broke an invariant fails the ordinary `cargo test`,
//! without a fuzzer. Each target's folder must exist and hold inputs, so a lost corpus is seen.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for &(name, check) in checks::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: no corpus inputs", dir.display());
        for path in inputs {
            let data = std::fs::read(&path).expect("a corpus input");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus inputs failing their checks: {failures:#?}"
    );
}

#[test]
fn every_fuzz_target_has_a_check_and_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut targets: Vec<String> = std::fs::read_dir(root.join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.expect("an entry").path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    targets.sort();
    let mut checked: Vec<String> = checks::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    checked.sort();
    assert_eq!(targets, checked, "fuzz_targets/ and checks::TARGETS differ");
}
