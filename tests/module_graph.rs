//! The library's modules and the imports between them, read from `src/`. Imports
//! must point one way, from a request's entry down to the leaves: this test fails on
//! an import cycle between modules, and keeps the layer graph in
//! docs/architecture.md up to date (regenerate it with
//! `UPDATE_MODULE_GRAPH=1 cargo test --test integration module_graph`).
//!
//! A module's own parent and children are left out: a `mod.rs` that re-exports
//! what its children define, and children that use their parent's types, are one
//! unit. Paths are read from the text (`crate::a::b`, `super::c`, grouped `{…}`
//! uses), comments excepted, which is all this crate uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of the library, as the layer graph shows them.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `a::b` for `src/a/b.rs` and `src/a/b/mod.rs`; `None` for the crate roots and the
/// binary's own modules.
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src()).ok()?;
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?;
    if parts.is_empty() && matches!(stem, "lib" | "main") {
        return None;
    }
    if parts.first().map(String::as_str) == Some("cmd") {
        return None;
    }
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    Some(parts.join("::"))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Every path after `crate::` or `super::` in `text`, expanded (`a::{b, c::d}` is
/// `a::b` and `a::c::d`), with `super` resolved against `module`.
fn paths(text: &str, module: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let rest = &code[index..];
        let boundary = index == 0 || !is_ident(bytes[index - 1] as char);
        let base: Option<(usize, Vec<String>)> = if boundary && rest.starts_with("crate::") {
            Some(("crate::".len(), Vec::new()))
        } else if boundary && rest.starts_with("super::") {
            let mut parent: Vec<String> = module.split("::").map(str::to_owned).collect();
            parent.pop();
            let mut skip = "super::".len();
            while code[index + skip..].starts_with("super::") {
                parent.pop();
                skip += "super::".len();
            }
            Some((skip, parent))
        } else {
            None
        };
        match base {
            Some((skip, prefix)) => {
                let (expanded, used) = expand(&code[index + skip..], prefix);
                out.extend(expanded);
                index += skip + used.max(1);
            }
            None => index += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Reads one path (with groups) from the start of `text`; the paths and the bytes
/// read.
fn expand(text: &str, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    let mut index = 0;
    loop {
        let ident: String = text[index..].chars().take_while(|c| is_ident(*c)).collect();
        if !ident.is_empty() {
            index += ident.len();
            path.push(ident);
            if text[index..].starts_with("::") {
                index += 2;
                continue;
            }
            return (vec![path], index);
        }
        if text[index..].starts_with('{') {
            index += 1;
            let mut all = Vec::new();
            loop {
                let skipped = text[index..]
                    .chars()
                    .take_while(|c| c.is_whitespace() || *c == ',')
                    .map(char::len_utf8)
                    .sum::<usize>();
                index += skipped;
                if text[index..].starts_with('}') || index >= text.len() {
                    return (all, index + 1);
                }
                let (inner, used) = expand(&text[index..], path.clone());
                all.extend(inner);
                index += used.max(1);
                // `as name` and anything else up to the next `,` or `}`.
                let tail = text[index..]
                    .chars()
                    .take_while(|c| *c != ',' && *c != '}')
                    .map(char::len_utf8)
                    .sum::<usize>();
                index += tail;
            }
        }
        return (vec![path], index);
    }
}

/// The module a path names: its longest prefix that is a module.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|len| path[..len].join("::"))
        .find(|candidate| modules.contains(candidate))
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Module → the modules it imports, its own ancestors and descendants left out.
fn graph() -> Graph {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let sources: Vec<(String, String)> = all
        .iter()
        .filter_map(|path| Some((module_of(path)?, std::fs::read_to_string(path).ok()?)))
        .collect();
    let modules: BTreeSet<String> = sources.iter().map(|(module, _)| module.clone()).collect();
    let mut graph = Graph::new();
    for (module, text) in &sources {
        let edges = graph.entry(module.clone()).or_default();
        for path in paths(text, module) {
            if let Some(target) = resolve(&path, &modules)
                && !related(module, &target)
            {
                edges.insert(target);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        state.index.insert(node, state.next);
        state.low.insert(node, state.next);
        state.next += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// The top-level layers (folders and root files) and the imports between them.
fn layers(graph: &Graph) -> Graph {
    let top = |module: &str| module.split("::").next().unwrap_or(module).to_owned();
    let mut layers = Graph::new();
    for (module, targets) in graph {
        let from = top(module);
        let entry = layers.entry(from.clone()).or_default();
        for target in targets {
            let to = top(target);
            if to != from {
                entry.insert(to);
            }
        }
    }
    layers
}

/// The layers as a Mermaid graph.
fn layer_graph(graph: &Graph) -> String {
    let mut out = String::from("```mermaid\nflowchart TD\n");
    for (from, targets) in &layers(graph) {
        for to in targets {
            out.push_str(&format!("  {from} --> {to}\n"));
        }
    }
    out.push_str("```\n");
    out
}

const BEGIN: &str = "<!-- module graph: generated by tests/module_graph.rs -->\n";
const END: &str = "<!-- end of module graph -->";

/// Import cycles that remain from before the rule, to be removed one by one; a new
/// one fails the test, and so does one of these once it is gone (so the list
/// only shrinks).
const KNOWN_CYCLES: &[&[&str]] = &[];

#[test]
fn imports_between_modules_point_one_way() {
    let graph = graph();
    assert!(graph.contains_key("server::mcp") && graph.contains_key("policy"));
    let found = cycles(&graph);
    let known: Vec<Vec<String>> = KNOWN_CYCLES
        .iter()
        .map(|cycle| cycle.iter().map(|m| (*m).to_owned()).collect())
        .collect();
    let describe = |cycle: &Vec<String>| {
        cycle
            .iter()
            .map(|module| {
                let within: Vec<&String> = graph[module]
                    .iter()
                    .filter(|target| cycle.contains(target))
                    .collect();
                format!("  {module} imports {within:?}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let new: Vec<String> = found
        .iter()
        .filter(|cycle| !known.contains(cycle))
        .map(describe)
        .collect();
    assert!(
        new.is_empty(),
        "import cycles between modules:\n{}",
        new.join("\n\n")
    );
    let gone: Vec<&Vec<String>> = known
        .iter()
        .filter(|cycle| !found.contains(cycle))
        .collect();
    assert!(gone.is_empty(), "remove these from KNOWN_CYCLES: {gone:?}");
}

/// Folders too: a file deep in `auth/` importing one in `server/` while `server`
/// imports `auth` is a loop between layers even when no two files form one.
#[test]
fn imports_between_layers_point_one_way() {
    let layers = layers(&graph());
    assert!(layers["server"].contains("auth"), "the layer graph is read");
    let found = cycles(&layers);
    assert!(
        found.is_empty(),
        "import cycles between top-level modules: {found:?}"
    );
}

#[test]
fn the_architecture_page_shows_the_current_layers() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let generated = layer_graph(&graph());
    let (before, rest) = page
        .split_once(BEGIN)
        .expect("the page marks its module graph");
    let (_, after) = rest
        .split_once(END)
        .expect("the page ends its module graph");
    let current = format!("{before}{BEGIN}{generated}{END}{after}");
    if std::env::var_os("UPDATE_MODULE_GRAPH").is_some() {
        std::fs::write(&path, &current).unwrap();
        return;
    }
    assert!(
        page == current,
        "docs/architecture.md's module graph is out of date: run \
         UPDATE_MODULE_GRAPH=1 cargo test --test integration module_graph"
    );
}

#[test]
fn paths_are_read_as_rust_writes_them() {
    let found = paths(
        "use crate::a::{b::C, d as e, f::{g, h}};\n// crate::not::this\nlet x = crate::i::j(super::k::L);",
        "m::n",
    );
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        ["a::b::C", "a::d", "a::f::g", "a::f::h", "i::j", "m::k::L"]
    );
}
