//! Keeps ARCHITECTURE.md true and the house's layers pointing one way:
//! - every repository path that ARCHITECTURE.md names exists;
//! - the crates depend on each other only downwards (conf <- storage <- mq <- worker <- master);
//! - inside every crate, no import circle between top-level modules (the same reading as
//!   `shared/tools/modcycles.py`: `crate::m`, `super::m`, and bare `m::` after a glob import of
//!   the crate root), and inside the layered crates no import from a lower layer to a higher one.
//!
//! It reads files as text, like the tools, so it runs in plain `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---- ARCHITECTURE.md names only paths that exist

/// Top-level entries a path named in ARCHITECTURE.md may start with.
const TOP: &[&str] = &[
    "conf/", "storage/", "cluster/", "mq/", "worker/", "master/", "tests/", "benches/", "init/",
    "man/", ".ci/",
];

/// The repository paths of a markdown text: backticked words that start with a top-level folder
/// (an `::item` or `:line` suffix is the place inside the file, not part of the path).
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 0 || part.contains(char::is_whitespace) {
            continue;
        }
        let is_path = TOP.iter().any(|t| part.starts_with(t))
            || matches!(part, "Cargo.toml" | "README.md" | "ARCHITECTURE.md");
        if !is_path {
            continue;
        }
        let path = part.split("::").next().unwrap_or(part);
        let path = path.split(':').next().unwrap_or(path);
        out.push(path.trim_end_matches(['.', ',']).to_string());
    }
    out
}

#[test]
fn every_path_architecture_md_names_exists() {
    let text = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = named_paths(&text);
    assert!(
        paths.len() >= 30,
        "ARCHITECTURE.md should map the code: only {} paths named",
        paths.len()
    );
    let missing: Vec<&String> = paths.iter().filter(|p| !root().join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn named_paths_reads_backticked_paths_only() {
    let text = "see `storage/src/lib.rs::Batch` and `worker/src/conn.rs:12`, not `Batch` or `a b/`";
    assert_eq!(
        named_paths(text),
        vec!["storage/src/lib.rs", "worker/src/conn.rs"]
    );
}

// ---- crates depend only downwards

/// The workspace crates each crate may depend on (`[dependencies]`; dev-dependencies are for
/// tests and benchmarks). The binary package (master/) is the root Cargo.toml.
const CRATE_DEPS: &[(&str, &[&str])] = &[
    ("conf", &[]),
    ("storage", &["conf"]),
    ("cluster", &["conf", "storage"]),
    ("mq", &["conf", "storage"]),
    ("worker", &["conf", "storage", "cluster", "mq"]),
    ("", &["conf", "worker", "cluster"]),
];

const CRATES: &[&str] = &["conf", "storage", "cluster", "mq", "worker"];

/// Workspace crates named in the `[dependencies]` table of a Cargo.toml.
fn workspace_deps(manifest: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("");
        if CRATES.contains(&name) {
            out.insert(name.to_string());
        }
    }
    out
}

#[test]
fn crates_depend_only_on_lower_layers() {
    for (krate, allowed) in CRATE_DEPS {
        let manifest = root().join(krate).join("Cargo.toml");
        let text = fs::read_to_string(&manifest).expect("Cargo.toml");
        let deps = workspace_deps(&text);
        let extra: Vec<&String> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{} depends on {extra:?}, above it in the layers",
            manifest.display()
        );
    }
}

// ---- no circle and no upward import inside a crate

/// Text before the first `#[cfg(test)] mod ...`: test modules are not part of the layers.
fn strip_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = text[at + "#[cfg(test)]".len()..].trim_start();
        let rest = rest
            .strip_prefix("pub(crate)")
            .or_else(|| rest.strip_prefix("pub"))
            .unwrap_or(rest)
            .trim_start();
        if rest.starts_with("mod ") && rest.split('\n').next().is_some_and(|l| l.contains('{')) {
            return &text[..at];
        }
        from = at + 1;
    }
    text
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Modules that `text` names through `crate::` or `super::` (with `{a, b::c}` groups).
fn referenced(text: &str, nested: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["crate::", "super::"] {
        if prefix == "super::" && nested {
            // super:: in a submodule points at its own top-level module.
            continue;
        }
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    out.insert(ident_at(item.trim()).to_string());
                }
            } else {
                out.insert(ident_at(rest).to_string());
            }
        }
    }
    out
}

/// Whether `text` uses `name::` as a bare path (after `use crate::*;`).
fn uses_bare(text: &str, name: &str) -> bool {
    let pat = format!("{name}::");
    let mut rest = text;
    while let Some(i) = rest.find(&pat) {
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return true;
        }
        rest = &rest[i + pat.len()..];
    }
    false
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tests") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// Top-level module -> the sibling modules it imports, for the crate whose sources are `src`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut globbed = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src).expect("below src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let full = fs::read_to_string(&path).expect("source");
        let text = strip_tests(&full).to_string();
        let nested = rel.components().count() > 1;
        let refs = referenced(&text, nested);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != module));
        if text.contains("use crate::*;") || text.contains("use super::*;") && !nested {
            globbed.push((module, text));
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (module, text) in globbed {
        for m in &modules {
            if *m != module && uses_bare(&text, m) {
                graph.get_mut(&module).expect("known").insert(m.clone());
            }
        }
    }
    for edges in graph.values_mut() {
        edges.retain(|e| modules.contains(e));
    }
    graph
}

/// Every strongly connected set of more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(w: &mut Walk<'g>, v: &'g str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on.insert(v);
        for next in &w.graph[v] {
            let next = next.as_str();
            if !w.index.contains_key(next) {
                visit(w, next);
                let l = w.low[v].min(w.low[next]);
                w.low.insert(v, l);
            } else if w.on.contains(next) {
                let l = w.low[v].min(w.index[next]);
                w.low.insert(v, l);
            }
        }
        if w.low[v] == w.index[v] {
            let mut comp = Vec::new();
            while let Some(x) = w.stack.pop() {
                w.on.remove(x);
                comp.push(x.to_string());
                if x == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                w.out.push(comp);
            }
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.out
}

/// The crates' source folders: each library's src/, and master/ for the binary.
fn crate_sources() -> Vec<(&'static str, PathBuf)> {
    let mut out: Vec<(&str, PathBuf)> = CRATES
        .iter()
        .map(|c| (*c, root().join(c).join("src")))
        .collect();
    out.push(("master", root().join("master")));
    out
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut modules = 0;
    for (krate, src) in crate_sources() {
        let graph = module_graph(&src);
        modules += graph.len();
        let found = circles(&graph);
        assert!(found.is_empty(), "import circles in {krate}: {found:?}");
    }
    // The reading sees the modules (else the check would pass on nothing).
    assert!(modules >= 40, "only {modules} top-level modules read");
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    g.insert("d".into(), ["a".to_string()].into());
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    let text = "use crate::{x, y::z};\nfn f() { super::w::g(); crate::v::h(); }";
    let refs = referenced(text, false);
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        vec!["v", "w", "x", "y"]
    );
}

/// The storage crate's layers, bottom to top (`storage/src/lib.rs`, ARCHITECTURE.md): a module
/// may import its own layer and those below, never one above.
const STORAGE_LAYERS: &[&[&str]] = &[
    &["codec"],
    &["env", "room", "warm", "txn", "direct"],
    &["journal"],
    &[
        "old", "tables", "kv", "members", "purge", "cache", "list", "slots",
    ],
    &["command"],
    &["store", "pass_env", "batch", "reads"],
];

#[test]
fn storage_layers_import_only_downwards() {
    let graph = module_graph(&root().join("storage/src"));
    // The reading sees real arrows (else the check below would pass on nothing).
    assert!(graph["batch"].contains("command") && graph["journal"].contains("txn"));
    let layer_of = |m: &str| STORAGE_LAYERS.iter().position(|l| l.contains(&m));
    for (module, imports) in &graph {
        let Some(own) = layer_of(module) else {
            panic!("storage/src/{module}: in no layer of STORAGE_LAYERS (and ARCHITECTURE.md)");
        };
        for import in imports {
            let theirs = layer_of(import).unwrap_or(usize::MAX);
            assert!(
                theirs <= own,
                "storage: {module} (layer {own}) imports {import} (layer {theirs}), above it"
            );
        }
    }
}
