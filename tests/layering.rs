//! The module graph: every top-level module of `src/` imports only modules of lower layers, so
//! no two top-level modules import each other (directly or through others). The layers are
//! those of `src/lib.rs`'s module list; this reads the sources, so a new `crate::` path that
//! reaches upward fails here with the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Lowest first. A module may import any module before it in this list, never one after it.
const LAYERS: &[&str] = &[
    "clock",
    "error",
    "config",
    "providers",
    "routing",
    "cluster",
    "observability",
    "cache",
    "conversation",
    "tenancy",
    "actors",
    "proxy",
    "http",
    "app",
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source line names through `crate::`, including every name of a
/// `use crate::{a, b::c}` group.
fn crate_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Only the first name of each comma-separated item at depth 0 is a module.
            let mut depth = 0;
            let mut item_start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if item_start && depth == 0 {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        continue;
                    }
                    if !name.is_empty() {
                        out.push(std::mem::take(&mut name));
                        item_start = false;
                    }
                }
            }
            if !name.is_empty() {
                out.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn top_level_modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("non-empty");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "main" || module == "lib" {
            continue; // the crate roots: main.rs calls into `app`, lib.rs declares the modules
        }
        let from = rank(&module)
            .unwrap_or_else(|| panic!("src/{module} is not in LAYERS: add it at its layer"));
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for to in crate_refs(code) {
                if to == module {
                    continue;
                }
                let Some(r) = rank(&to) else { continue };
                edges
                    .entry((module.clone(), to.clone()))
                    .or_insert_with(|| format!("{}:{}", rel.display(), n + 1));
                if r > from {
                    upward.push(format!(
                        "src/{}:{}: `{module}` imports `{to}`, a higher layer",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that reach upward (layers, lowest first: {LAYERS:?}):\n{}",
        upward.join("\n")
    );
    // The check is not vacuous: the layers really are used.
    assert!(edges.contains_key(&("http".into(), "proxy".into())));
    assert!(edges.contains_key(&("proxy".into(), "actors".into())));
    assert!(edges.contains_key(&("actors".into(), "config".into())));
}

#[test]
fn crate_refs_reads_paths_and_groups() {
    assert_eq!(crate_refs("use crate::config::Leaf;"), ["config"]);
    assert_eq!(
        crate_refs("use crate::{actors::x, config::{A, b::C}, error};"),
        ["actors", "config", "error"]
    );
    assert_eq!(
        crate_refs("let a = crate::clock::now_ms() + crate::x::y();"),
        ["clock", "x"]
    );
}
