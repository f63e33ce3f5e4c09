//! The dependency direction, checked against the code: every `crate::` path in
//! `src/` (outside `#[cfg(test)]` blocks) is an edge between top-level modules, and
//! each edge must be allowed by the table in docs/architecture.md ("Who may use
//! whom"). The table must also be exact (an allowed edge nothing uses is reported,
//! so the document cannot promise more than the code does), name every module, and
//! have no circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Names the crate root re-exports, and the module each belongs to.
const ROOT_ITEMS: [(&str, Option<&str>); 6] = [
    ("Config", Some("config")),
    ("AppError", Some("error")),
    ("AppState", Some("state")),
    ("launch", Some("app")),
    ("router", Some("app")),
    // Defined in lib.rs itself: the crate root, below everything.
    ("install_tls_provider", None),
];

/// The code of a file that counts: comments out, and unit tests (which may reach
/// anything) cut off.
fn code_of(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules: `src/<name>.rs` and `src/<name>/`.
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension().is_some_and(|e| e == "rs")).then_some(name)
        })
        .filter(|n| n != "lib" && n != "main")
        .collect()
}

/// The module a `crate::NAME` path reaches.
fn target(name: &str, modules: &BTreeSet<String>) -> Option<String> {
    if modules.contains(name) {
        return Some(name.to_string());
    }
    ROOT_ITEMS
        .iter()
        .find(|(item, _)| *item == name)
        .unwrap_or_else(|| panic!("crate::{name} is neither a module nor a known root item"))
        .1
        .map(ToString::to_string)
}

/// Every edge the code has: module → module → files.
fn code_edges(modules: &BTreeSet<String>) -> Edges {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut edges = Edges::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let from = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may reach anything.
        let code = code_of(&text);
        let mut add = |name: &str| {
            if let Some(to) = target(name, modules)
                && to != from
            {
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.clone());
            }
        };
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::b, c}`: the first segment of each entry.
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for entry in inner.split(',') {
                    let name = entry.trim().split("::").next().unwrap_or_default().trim();
                    if !name.is_empty() {
                        add(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                add(&name);
            }
        }
    }
    edges
}

/// The table under "Who may use whom": module → the modules it may use.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/architecture.md")).unwrap();
    let section = doc
        .split("### Who may use whom")
        .nth(1)
        .expect("docs/architecture.md has a \"### Who may use whom\" section");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(ToString::to_string)
            .collect()
    };
    let mut table = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        if cells.len() < 2 || cells[0].contains("---") || cells[0].trim() == "module" {
            continue;
        }
        let [name] = ticked(cells[0])
            .try_into()
            .unwrap_or_else(|c: Vec<String>| {
                panic!("a row of the table names one module in backticks, not {c:?}: {line}")
            });
        table.insert(name, ticked(cells[1]).into_iter().collect());
    }
    table
}

/// A circle in `graph`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_import_goes_the_documented_way_and_the_table_is_exact() {
    let modules = modules(&Path::new(ROOT).join("src"));
    let code = code_edges(&modules);
    let allowed = documented();

    let unlisted: Vec<&String> = modules
        .iter()
        .filter(|m| !allowed.contains_key(*m))
        .collect();
    assert!(
        unlisted.is_empty(),
        "docs/architecture.md (Who may use whom) has no row for {unlisted:?}"
    );
    let mut wrong = Vec::new();
    for (from, tos) in &code {
        for (to, files) in tos {
            if !allowed.get(from).is_some_and(|a| a.contains(to)) {
                wrong.push(format!("{from} -> {to} (in {files:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the documented direction (docs/architecture.md, Who may use \
         whom):\n  {}",
        wrong.join("\n  ")
    );
    let mut unused = Vec::new();
    for (from, tos) in &allowed {
        for to in tos {
            if !code.get(from).is_some_and(|c| c.contains_key(to)) {
                unused.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "docs/architecture.md allows edges nothing uses; remove them so the table says \
         what the code does:\n  {}",
        unused.join("\n  ")
    );
    assert_eq!(circle(&allowed), None, "a circle among top-level modules");
}

#[test]
fn the_checker_sees_an_edge_and_a_circle() {
    // The parts above, on inputs whose answer is known.
    let modules: BTreeSet<String> = ["a", "b", "config"].map(String::from).into();
    assert_eq!(target("Config", &modules).as_deref(), Some("config"));
    assert_eq!(target("install_tls_provider", &modules), None);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(
        circle(&graph),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    let code = code_edges(&self::modules(&Path::new(ROOT).join("src")));
    assert!(
        code["sync"].contains_key("db") && !code["sync"].contains_key("api"),
        "the sync engine uses db and never the web layer: {:?}",
        code["sync"].keys()
    );
}

/// A file's module path: `sync/push/write.rs` is `sync::push::write`, `sync/push/mod.rs`
/// is `sync::push`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The paths a piece of code names through `crate::`, `super::` and `self::`, made
/// absolute from the module `here`: `use super::{a::B, c}` in `x::y` gives `x::a::B`
/// and `x::c`.
fn named_paths(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(start) {
            // Not the tail of a longer name (`myself::`) or of a path (`a::super::`).
            if i > 0
                && (bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || bytes[i - 1] == b':')
            {
                continue;
            }
            let mut base: Vec<String> = match start {
                "crate::" => Vec::new(),
                _ => here.to_vec(),
            };
            let mut rest = &code[i + start.len() - 2..];
            if start == "super::" {
                base.pop();
            }
            // Further segments: `super::super::x::y::`.
            while let Some(after) = rest.strip_prefix("::") {
                if let Some(group) = after.strip_prefix('{') {
                    let inner = &group[..group.find('}').unwrap_or(group.len())];
                    for entry in inner.split(',') {
                        let name = ident(entry.trim());
                        if !name.is_empty() && name != "self" {
                            let mut p = base.clone();
                            p.push(name);
                            out.push(p);
                        }
                    }
                    break;
                }
                let name = ident(after);
                if name.is_empty() {
                    break;
                }
                rest = &after[name.len()..];
                if name == "super" {
                    base.pop();
                } else {
                    base.push(name);
                }
            }
            out.push(base);
        }
    }
    out
}

#[test]
fn no_circle_among_the_files_of_a_module() {
    // Inside each folder, its files and subfolders use each other one way: a file may
    // use its parent (`mod.rs`), but two siblings never use each other, directly or
    // around a ring.
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let rels: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&src).unwrap().to_string_lossy().to_string())
        .collect();
    let known: BTreeSet<Vec<String>> = rels.iter().map(|r| module_path(r)).collect();
    // parent module → sibling → siblings it uses.
    let mut levels: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (file, rel) in files.iter().zip(&rels) {
        let here = module_path(rel);
        if here.len() < 2 {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = code_of(&text);
        for mut path in named_paths(&code, &here) {
            while !path.is_empty() && !known.contains(&path) {
                path.pop();
            }
            let common = here.iter().zip(&path).take_while(|(a, b)| a == b).count();
            // Top-level edges are the other test's; a parent or a child is no sibling.
            if common == 0 || common >= here.len() || common >= path.len() {
                continue;
            }
            levels
                .entry(here[..common].to_vec())
                .or_default()
                .entry(here[common].clone())
                .or_default()
                .insert(path[common].clone());
        }
    }
    let circles: Vec<String> = levels
        .iter()
        .filter_map(|(parent, graph)| {
            circle(graph).map(|c| format!("in {}: {}", parent.join("/"), c.join(" -> ")))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "files that use each other:\n  {}",
        circles.join("\n  ")
    );
    // The walk saw the engine's files: push writes conflicts, and never the reverse.
    let sync = &levels[&vec!["sync".to_string()]];
    assert!(
        sync["push"].contains("conflicts")
            && !sync.get("conflicts").is_some_and(|c| c.contains("push"))
    );
}

#[test]
fn relative_paths_resolve_from_the_file() {
    let here: Vec<String> = ["sync", "push", "write"].map(String::from).into();
    let got = named_paths(
        "use super::{decide::X, wire};\nuse crate::sync::conflicts::{self, New};\nsuper::super::merge::f()",
        &here,
    );
    let show: Vec<String> = got.iter().map(|p| p.join("::")).collect();
    assert!(show.contains(&"sync::push::decide".to_string()), "{show:?}");
    assert!(show.contains(&"sync::push::wire".to_string()), "{show:?}");
    assert!(
        show.contains(&"sync::conflicts::New".to_string()),
        "{show:?}"
    );
    assert!(show.contains(&"sync::merge::f".to_string()), "{show:?}");
}

#[test]
fn the_web_layer_runs_no_sql() {
    // Handlers and console pages call the domains' services; the statements live
    // below them (docs/architecture.md: handlers never build SQL).
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    for part in ["api", "console"] {
        rs_files(&src.join(part), &mut files);
    }
    files.extend(["app.rs", "state.rs"].map(|f| src.join(f)));
    let with_sql: Vec<String> = files
        .iter()
        .filter(|f| {
            let code = code_of(&std::fs::read_to_string(f).unwrap());
            code.contains("sqlx::query")
                || code.contains("query_as(")
                || code.contains("query_scalar(")
        })
        .map(|f| f.strip_prefix(&src).unwrap().to_string_lossy().to_string())
        .collect();
    assert!(with_sql.is_empty(), "SQL in the web layer: {with_sql:?}");
}
