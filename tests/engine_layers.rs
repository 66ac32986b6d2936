//! The engine is layered (docs/DESIGN.md §1): each top-level module of `src/` names only
//! modules below it, so the import graph has no cycle. A cycle crept back once when features
//! stored their state in `fs.rs` under types declared above it; this test keeps it out.
//!
//! The graph is read from the source: an edge A → B for every `crate::B` that A's files
//! name outside their `#[cfg(test)]` part (tests may import anything). The front ends
//! (`src/bin/`) and `lib.rs`, which re-exports the public API, are not layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the modules it names.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "bin" || name == "lib.rs" {
            continue;
        }
        if p.is_dir() {
            let mut v = Vec::new();
            rust_files(&p, &mut v);
            files.insert(name, v);
        } else if let Some(m) = name.strip_suffix(".rs") {
            files.insert(m.to_string(), vec![p]);
        }
    }
    let mut graph = BTreeMap::new();
    for (m, paths) in &files {
        let mut to = BTreeSet::new();
        for p in paths {
            let text = std::fs::read_to_string(p).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap();
            for name in crate_paths(text) {
                if name != *m && files.contains_key(&name) {
                    to.insert(name);
                }
            }
        }
        graph.insert(m.clone(), to);
    }
    graph
}

/// The first segment of every `crate::` path in `text`, including those inside
/// `use crate::{a::X, b}` groups.
fn crate_paths(text: &str) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: those at brace depth 0.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        out.push(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in &self.graph[v] {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let lw = self.low[w.as_str()];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w.as_str()) {
                    let iw = self.index[w.as_str()];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.found.push(comp);
                }
            }
        }
    }
    let mut w = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            w.visit(v);
        }
    }
    w.found
}

#[test]
fn the_engine_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    assert!(graph.len() > 20, "the source tree was not found: {} modules", graph.len());
    let found = cycles(&graph);
    let mut mutual = Vec::new();
    for (a, to) in &graph {
        for b in to {
            if a < b && graph[b].contains(a) {
                mutual.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "import cycles among the engine's modules: {found:?}; modules naming each other: {mutual:?}. \
         Declare shared state in the lower module (e.g. `fs/`), not in the one that acts on it."
    );
}

#[test]
fn the_graph_reader_sees_grouped_and_plain_paths() {
    let text = "use crate::{alloc::X, fs::{A, B}, tree};\nlet r = crate::volume::f();";
    assert_eq!(crate_paths(text), ["alloc", "fs", "tree", "volume"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&g), [vec!["a".to_string(), "b".to_string()]]);
}
