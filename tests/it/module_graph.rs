//! The module graph has no circles: dependencies point one way, down the layers ARCHITECTURE.md's
//! "Where each concern lives" draws. A node is a top-level module of the crate (`db`, `observability`, ...),
//! except under `domains`, where each domain is its own node (`domains::agents`); an edge is any
//! `crate::` path in the code (a `use` line or a full path inline). Files inside one node may
//! use each other freely (a domain's `routes` and its `mod`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The node a source file belongs to, from its path under `src/`.
fn node_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        // The crate roots declare the modules; they are not a layer.
        [root] if root == "lib" || root == "main" => None,
        [domains, domain, ..] if domains == "domains" && domain != "mod" => {
            Some(format!("domains::{domain}"))
        }
        [first, ..] => Some(first.clone()),
        [] => None,
    }
}

/// The code of a file without its comments (doc comments name modules in prose).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every node a piece of code names through `crate::`, including grouped imports
/// (`use crate::{db::Database, domains::agents}`).
fn targets(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Up to the matching brace.
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.extend(path_target(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            found.extend(path_target(rest));
        }
    }
    found
}

/// The node a path after `crate::` starts with (`domains::agents::repo::x` → `domains::agents`).
fn path_target(path: &str) -> Option<String> {
    let segment = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let first = segment(path);
    if first.is_empty() {
        return None;
    }
    if first == "domains" {
        let after = path["domains".len()..].strip_prefix("::").unwrap_or("");
        if let Some(group) = after.strip_prefix('{') {
            // `crate::domains::{agents, memories}`: the first name is enough to name the layer;
            // a grouped import of several domains is not used in this crate.
            return Some(format!("domains::{}", segment(group.trim_start())));
        }
        let domain = segment(after);
        return Some(if domain.is_empty() {
            "domains".to_owned()
        } else {
            format!("domains::{domain}")
        });
    }
    Some(first)
}

fn graph_of(files: &[(PathBuf, String)]) -> Graph {
    let mut graph = Graph::new();
    for (path, text) in files {
        let Some(from) = node_of(path) else { continue };
        let entry = graph.entry(from.clone()).or_default();
        for to in targets(&code_of(text)) {
            if to != from {
                entry.insert(to);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one node (Tarjan's algorithm).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, node: &'g str) {
        let i = s.index.len();
        s.index.insert(node, i);
        s.low.insert(node, i);
        s.stack.push(node);
        s.on_stack.insert(node);
        for next in s.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.strip_prefix(root).unwrap().to_owned(), text));
        }
    }
}

/// Which node uses which, for the failure message.
fn explain(graph: &Graph, circle: &[String]) -> String {
    let mut lines = Vec::new();
    for from in circle {
        for to in graph.get(from).into_iter().flatten() {
            if circle.contains(to) {
                lines.push(format!("  {from} -> {to}"));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn the_module_graph_has_no_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let graph = graph_of(&files);
    assert!(graph.len() > 20, "the walk found the modules: {graph:?}");
    let found = circles(&graph);
    let report: Vec<String> = found
        .iter()
        .map(|c| format!("{}:\n{}", c.join(", "), explain(&graph, c)))
        .collect();
    assert!(
        found.is_empty(),
        "circles in the module graph:\n{}",
        report.join("\n")
    );
}

#[test]
fn a_circle_added_on_purpose_is_caught() {
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_owned());
    let files = [
        file("db/mod.rs", "use crate::observability::metrics;\n"),
        // Grouped, inline and commented references all count, except the comment.
        file(
            "observability/metrics.rs",
            "use crate::{config::Config, db::Database};\n// crate::app is prose\n",
        ),
        file(
            "domains/agents/routes.rs",
            "fn f() { crate::state::AppState::x(); }",
        ),
        file("domains/agents/mod.rs", "use super::routes;"),
        file(
            "state.rs",
            "use crate::domains::{agents::Agent};\nuse crate::db::Database;",
        ),
        file("app.rs", "use crate::domains::memories::x;"),
        file("lib.rs", "pub mod app; use crate::app::x;"),
    ];
    let graph = graph_of(&files);
    assert!(graph["observability"].contains("config"));
    assert!(
        !graph["observability"].contains("app"),
        "a comment is not a use"
    );
    assert!(!graph.contains_key("lib"));
    let mut found = circles(&graph);
    found.sort();
    assert_eq!(
        found,
        [
            vec!["db".to_owned(), "observability".to_owned()],
            vec!["domains::agents".to_owned(), "state".to_owned()],
        ]
    );
}
