//! The crate's layers, enforced: every module imports only its own layer and those below it,
//! engine ← support ← store ← adapters ← server/CLI. One crate (lib + bin) cannot have the
//! compiler check this, so this test reads the sources and names each upward import.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/` by layer, lowest first. A module may import its own layer and
/// those before it; a module in no layer fails the test, so that a new one gets a place.
const LAYERS: &[(&str, &[&str])] = &[
    // Pure decisions: references, keys, payloads, pod views, the namespace view, policy types.
    ("engine", &["engine"]),
    // Formats, instruments and Lease election that know no Kubernetes object store.
    (
        "support",
        &[
            "manifests",
            "metrics",
            "telemetry",
            "events",
            "tls",
            "leader",
        ],
    ),
    // Keeps the engine's namespace view current: files, watches, object → entry conversion.
    ("store", &["store"]),
    // Turn requests, reports and cluster events into engine calls.
    (
        "adapters",
        &[
            "admission",
            "verify",
            "attribution",
            "reconcile",
            "audit",
            "doctor",
            "check",
            "uninstall",
        ],
    ),
    // Wiring: the server, the command line, the binary.
    ("shell", &["server", "cli", "main", "lib"]),
];

/// The layer index of a top-level module, if it has one.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The top-level module a source file belongs to (`src/engine/keyring.rs` → `engine`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_owned()
}

/// The top-level modules a source text names through `crate::` paths (grouped `use crate::{a, b}`
/// included), comments left out.
fn imports_of(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            // Skip paths that only end in "crate::", e.g. `pullgate_crate::`.
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !preceded_by_ident {
                if let Some(group) = after.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or_default();
                    for item in inner.split(',') {
                        let name = item.trim().split("::").next().unwrap_or_default().trim();
                        if !name.is_empty() && name != "self" {
                            out.insert(name.to_owned());
                        }
                    }
                } else {
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            }
            rest = after;
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot read an entry of {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_import_scanner_sees_plain_grouped_and_nested_paths() {
    let text = "use crate::store::View;\n\
                use crate::{engine::index::ClusterIndex, metrics};\n\
                let x = crate::verify::run(); // crate::server is only a comment\n\
                use pullgate_crate::thing;\n";
    let want: BTreeSet<String> = ["engine", "metrics", "store", "verify"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(imports_of(text), want);
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "expected the crate's sources under {}, found {} files",
        src.display(),
        files.len()
    );
    let mut problems = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let rel = file
            .strip_prefix(&src)
            .unwrap_or(file)
            .display()
            .to_string();
        let Some(own) = layer_of(&module) else {
            problems.push(format!(
                "src/{rel}: module `{module}` is in no layer: add it to LAYERS in tests/layers.rs"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for import in imports_of(&text) {
            match layer_of(&import) {
                Some(layer) if layer <= own => {}
                Some(layer) => problems.push(format!(
                    "src/{rel}: `{module}` ({}) imports `crate::{import}` ({}), a layer above it",
                    LAYERS[own].0, LAYERS[layer].0
                )),
                None => problems.push(format!(
                    "src/{rel}: imports `crate::{import}`, which is in no layer: add it to LAYERS in tests/layers.rs"
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
