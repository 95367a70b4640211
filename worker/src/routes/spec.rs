//! Both ways between the specs and the route tables: every endpoint the specs document has a
//! row in its mode's table, and every row but the test-only ones is documented.
//!
//! Where the specs list endpoints: the "## 1." section of `kv-api.md` and of `mq-api.md` (a
//! table of backticked paths, plus mq's line on the shared paths), and in `ops.md` each
//! paragraph or table row that says "both modes" (the health paths and `/metrics`). The
//! repository's own additions to the specs' paths ([`REPO_PATHS`], e.g. `/openapi.json`) are
//! documented in `man/huststore.8` instead, and checked there.

use super::{Kind, Route, KV_ROUTES, MQ_ROUTES};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

const SPEC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/spec");

/// Paths of both modes that the specs do not list and huststore(8) documents.
const REPO_PATHS: &[&str] = &["/openapi.json"];

const MAN_PAGE: &str = include_str!("../../../man/huststore.8");

/// The backticked tokens of `text` that look like request paths (`/name`, `/a/b.html`).
fn paths(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            t.len() > 1
                && t.starts_with('/')
                && t[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_./".contains(&b))
        })
        .map(str::to_string)
        .collect()
}

/// The text of the level-2 section whose heading starts with `## {number}`.
fn section<'a>(doc: &'a str, number: &str) -> &'a str {
    let heading = format!("\n## {number}");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("no section \"## {number}\" in the spec"));
    let rest = &doc[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// What `ops.md` documents for both modes: each table row and each other paragraph that
/// says so.
fn both_modes(ops: &str) -> BTreeSet<String> {
    let mut units: Vec<String> = Vec::new();
    for block in ops.split("\n\n") {
        if block.trim_start().starts_with('|') {
            units.extend(block.lines().map(str::to_string));
        } else {
            units.push(block.to_string());
        }
    }
    units
        .iter()
        .filter(|u| u.contains("both modes"))
        .flat_map(|u| paths(u))
        .collect()
}

fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("could not read {}: {e}", path.display()))
}

fn check(mode: &str, table: &[Route], documented: &BTreeSet<String>) {
    let rows: BTreeSet<&str> = table
        .iter()
        .filter(|r| r.kind != Kind::Debug)
        .map(|r| r.path)
        .collect();
    let missing: Vec<&String> = documented
        .iter()
        .filter(|p| !table.iter().any(|r| r.path == p.as_str()))
        .collect();
    let undocumented: Vec<&&str> = rows.iter().filter(|p| !documented.contains(**p)).collect();
    assert!(
        missing.is_empty() && undocumented.is_empty(),
        "{mode} mode: documented but without a row: {missing:?}; rows the specs do not \
         document: {undocumented:?}"
    );
}

#[test]
fn every_documented_path_has_a_row_and_every_row_is_documented() {
    let dir = Path::new(SPEC_DIR);
    if !dir.is_dir() {
        // Straight to the stream: the test harness hides `eprintln!` of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SPEC CHECK NOT RUN: the spec folder {} is missing, so the route tables \
             were not compared with kv-api.md, mq-api.md and ops.md. ***\n",
            dir.display()
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "the spec folder {} is missing (CI is set)",
            dir.display()
        );
        return;
    }
    let shared = both_modes(&read(dir, "ops.md"));
    for path in ["/status.html", "/version", "/metrics"] {
        assert!(shared.contains(path), "ops.md no longer lists {path}");
    }
    for (mode, spec, table) in [
        ("kv", "kv-api.md", KV_ROUTES),
        ("mq", "mq-api.md", MQ_ROUTES),
    ] {
        let mut documented = paths(section(&read(dir, spec), "1."));
        assert!(
            documented.len() > 10,
            "{spec} §1 lists only {documented:?}: has its format changed?"
        );
        if mode == "kv" {
            // cluster.md §5: the HA administration paths of a cluster (`/cluster/status`).
            let cluster = paths(section(&read(dir, "cluster.md"), "5."));
            assert!(cluster.contains("/cluster/status"), "cluster.md §5 changed");
            documented.extend(cluster);
        }
        documented.extend(shared.iter().cloned());
        documented.extend(REPO_PATHS.iter().map(|p| p.to_string()));
        check(mode, table, &documented);
    }
}

#[test]
fn the_repositorys_own_paths_are_in_the_man_page() {
    for path in REPO_PATHS {
        // roff escapes nothing in a path but a leading dot; `\fB/openapi.json\fR` is fine.
        assert!(
            MAN_PAGE.contains(path),
            "man/huststore.8 does not document {path}"
        );
    }
}

#[test]
fn paths_are_taken_from_backticks_only() {
    let found = paths("| `/put` | `queue` | `/a/b.html` | /bare | `ok\\n` | `/x y` |");
    let expected: BTreeSet<String> = ["/a/b.html", "/put"].map(String::from).into();
    assert_eq!(found, expected);
}
