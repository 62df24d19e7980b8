//! Reading Kubernetes manifests: multi-document YAML, JSON, and `kind: List`, from files,
//! directories or stdin, each document tagged with where it came from.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest single input accepted (a file or stdin).
pub const MAX_INPUT_BYTES: u64 = 32 << 20;

/// One object read from the input, with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// File name, or `-` for stdin.
    pub source: String,
    /// Index of the document in its file (0-based; items of a List count as their own).
    pub index: usize,
    /// The object.
    pub value: serde_json::Value,
}

impl Document {
    /// The object's `kind`.
    pub fn kind(&self) -> &str {
        self.value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.source, self.index)
    }
}

/// Why input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input exceeds [`MAX_INPUT_BYTES`].
    #[error("{path}: larger than {MAX_INPUT_BYTES} bytes")]
    TooLarge {
        /// The path.
        path: String,
    },
    /// A document does not parse.
    #[error("{path} (document {index}): {message}")]
    Parse {
        /// The path.
        path: String,
        /// Index of the failing document.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// Budget against hostile YAML (alias bombs, deep nesting) well above what manifests need.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // Error snippets quote source lines, which in a Secret manifest may hold credentials.
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 200,
        },
    }
}

/// Parse one YAML (or JSON) document into a JSON value.
pub fn yaml_to_value(text: &str) -> Result<serde_json::Value, String> {
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| e.to_string())
}

/// Parse the text of one file into its documents; `kind: List` items are flattened.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let values: Vec<serde_json::Value> = if text.trim_start().starts_with(['{', '[']) {
        // JSON: one value (possibly a List); serde_json reports precise positions.
        let v = serde_json::from_str(text).map_err(|e| ManifestError::Parse {
            path: source.to_owned(),
            index: 0,
            message: e.to_string(),
        })?;
        vec![v]
    } else {
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            ManifestError::Parse {
                path: source.to_owned(),
                index: document_at_line(text, line),
                message: e.to_string(),
            }
        })?
    };
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Object(ref m)
                if m.get("kind").and_then(|k| k.as_str()) == Some("List")
                    || m.get("kind")
                        .and_then(|k| k.as_str())
                        .is_some_and(|k| k.ends_with("List"))
                        && m.contains_key("items") =>
            {
                let items = m
                    .get("items")
                    .and_then(|i| i.as_array())
                    .cloned()
                    .unwrap_or_default();
                for item in items {
                    out.push(Document {
                        source: source.to_owned(),
                        index: i,
                        value: item,
                    });
                }
            }
            serde_json::Value::Object(_) => out.push(Document {
                source: source.to_owned(),
                index: i,
                value: v,
            }),
            other => {
                return Err(ManifestError::Parse {
                    path: source.to_owned(),
                    index: i,
                    message: format!("expected an object, found {}", json_type(&other)),
                })
            }
        }
    }
    Ok(out)
}

/// Index of the document holding 1-based `line`: the `---` separators before it (a leading one opens document 0).
fn document_at_line(text: &str, line: u64) -> usize {
    let mut index = 0;
    let mut seen_content = false;
    for (n, l) in text.lines().enumerate() {
        if n as u64 + 1 >= line {
            break;
        }
        if l == "---" || l.starts_with("--- ") {
            if seen_content {
                index += 1;
            }
            seen_content = true;
        } else if !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            seen_content = true;
        }
    }
    index
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Read every document under the given paths (files, directories recursively, or `-` for stdin).
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Document>, ManifestError> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)?;
    }
    let mut docs = Vec::new();
    for f in files {
        let (name, text) = read_input(&f)?;
        docs.extend(parse_documents(&name, &text)?);
    }
    Ok(docs)
}

/// The manifest files under `path`, sorted, for loading and for watching.
pub fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    if path.as_os_str() == "-" {
        out.push(path.to_owned());
        return Ok(());
    }
    let io = |source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect_files(&e, out)?;
        } else if e
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
        {
            out.push(e);
        }
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<(String, String), ManifestError> {
    let name = path.display().to_string();
    let io = |source| ManifestError::Io {
        path: name.clone(),
        source,
    };
    let mut buf = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut buf)
            .map_err(io)?;
    } else {
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut buf)
            .map_err(io)?;
    }
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(ManifestError::TooLarge { path: name });
    }
    Ok((name, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists() {
        let text = "kind: Pod\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- kind: Secret\n- kind: ServiceAccount\n";
        let docs = parse_documents("f.yaml", text).unwrap();
        let kinds: Vec<_> = docs.iter().map(Document::kind).collect();
        assert_eq!(kinds, ["Pod", "Secret", "ServiceAccount"]);
        assert_eq!(docs[1].index, 1);
        assert_eq!(docs[0].to_string(), "f.yaml (document 0)");
    }

    #[test]
    fn yaml_errors_name_the_document_and_quote_no_source() {
        let text = "kind: Pod\n---\nkind: Secret\nstringData:\n  password: \"hunter2-planted\n---\nkind: Pod\n";
        match parse_documents("f.yaml", text) {
            Err(ManifestError::Parse { index, message, .. }) => {
                assert_eq!(index, 1, "{message}");
                assert!(!message.contains("hunter2-planted"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        assert_eq!(document_at_line("---\na: 1\n---\nb: [\n", 4), 1);
        assert_eq!(document_at_line("a: 1\n", 1), 0);
    }

    #[test]
    fn json_input() {
        let docs =
            parse_documents("f.json", r#"{"kind":"PodList","items":[{"kind":"Pod"}]}"#).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].kind(), "Pod");
        assert!(matches!(
            parse_documents("f.json", "{bad"),
            Err(ManifestError::Parse { .. })
        ));
    }

    #[test]
    fn malformed_and_adversarial_yaml_is_an_error() {
        assert!(parse_documents("f", "a: [1, 2").is_err());
        assert!(parse_documents("f", "- 1\n- 2\n").is_err());
        assert!(parse_documents("f", "just a string").is_err());
        // Billion laughs: aliases expand exponentially; the budget must refuse it quickly.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse_documents("bomb.yaml", &bomb).is_err());
        let deep = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(parse_documents("deep.yaml", &format!("a: {deep}")).is_err());
        assert!(parse_documents("deep.json", &deep).is_err());
    }

    #[test]
    fn directories_are_walked_for_manifest_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: Pod\n").unwrap();
        std::fs::write(dir.path().join("sub/b.json"), "{\"kind\":\"Secret\"}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "kind: Pod\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "kind: Pod\n").unwrap();
        let docs = load_paths(&[dir.path().to_owned()]).unwrap();
        assert_eq!(
            docs.iter().map(Document::kind).collect::<Vec<_>>(),
            ["Pod", "Secret"]
        );
        assert!(matches!(
            load_paths(&[dir.path().join("missing")]),
            Err(ManifestError::Io { .. })
        ));
    }
}
