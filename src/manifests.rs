//! Reading Kubernetes manifests: multi-document YAML, JSON, and `kind: List`, from files,
//! directories or stdin, each document tagged with where it came from.
//!
//! A repository of manifests holds things that are not manifests (Helm templates, values files,
//! CI pipelines) and broken files; reading never stops at one: every document that can be read is
//! returned, and every file or document that cannot is reported with its place and a reason in
//! plain words.

use serde::de;
use serde::Serialize;
use std::fmt;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Largest single input accepted (a file or stdin).
pub const MAX_INPUT_BYTES: u64 = 32 << 20;

/// Deepest nesting of mappings and sequences in a YAML document. The deepest real manifests (CRD
/// schemas) stay near 30; the parser recurses per level, and at 64 it stays within a 2 MiB thread
/// stack (a tokio worker's) even in a debug build, which overflowed near 85.
const MAX_DEPTH: usize = 64;
/// Most documents read from one file (serde-saphyr's own default is 1024, too few for the
/// output of a large kustomize build).
const MAX_DOCUMENTS_PER_FILE: usize = 10_000;
/// Most aliases (`*name`) and anchors (`&name`) in one YAML document.
const MAX_ALIASES: usize = 1_000;
/// Most nodes that aliases may expand to in one file, all its documents together: each document
/// parses on its own, so a per-document limit alone would let a file of many small alias bombs
/// multiply it.
const MAX_ALIAS_NODES_PER_FILE: usize = 1_000_000;
/// Most nodes (mappings, sequences, scalars) in one YAML document, aliases expanded.
const MAX_NODES: usize = 250_000;

/// One object read from the input, with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// File name, or `-` for stdin.
    pub source: String,
    /// Index of the document in its file (0-based, counting empty documents as YAML does; the
    /// items of a List share the List's index).
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

/// A file, or one document of it, that could not be read or evaluated, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// File name, or `-` for stdin.
    pub file: String,
    /// Index of the document (as in [`Document::index`]); absent when the whole file is unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// What is wrong, for people (never quoting values: a Secret's data stays out of it).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(i) => write!(f, "{} (document {i}): {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why input could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A path given (or a directory under it) could not be listed or accessed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file or a document could not be read (the first one, when reading strictly).
    #[error("{0}")]
    Unreadable(Problem),
}

/// What reading the input found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Manifests {
    /// The objects (mappings; the items of a List count as their own).
    pub documents: Vec<Document>,
    /// Documents that are a scalar or a list rather than an object: not a Kubernetes object.
    pub not_objects: Vec<Problem>,
    /// Files and documents that could not be read.
    pub unreadable: Vec<Problem>,
}

impl Manifests {
    /// The objects, or the first thing that could not be read or was not an object: for readers
    /// (the file store) that must not act on a partial view.
    pub fn into_strict(self) -> Result<Vec<Document>, ManifestError> {
        match self.unreadable.into_iter().chain(self.not_objects).next() {
            Some(p) => Err(ManifestError::Unreadable(p)),
            None => Ok(self.documents),
        }
    }
}

/// Where parsed documents and problems go: collected ([`Manifests`]) or handed on one at a time
/// ([`for_each_document`]).
trait Sink {
    fn document(&mut self, d: Document);
    fn not_object(&mut self, p: Problem);
    fn unreadable(&mut self, p: Problem);

    fn push_value(&mut self, source: &str, index: usize, value: serde_json::Value) {
        let not_object = |v: &serde_json::Value| Problem {
            file: source.to_owned(),
            document: Some(index),
            message: format!("expected an object, found {}", json_type(v)),
        };
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::Object(mut m) if is_list(&m) => {
                // Moved out, not cloned: a List's items are its bulk.
                let items = match m.remove("items") {
                    Some(serde_json::Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                for item in items {
                    if item.is_object() {
                        self.document(Document {
                            source: source.to_owned(),
                            index,
                            value: item,
                        });
                    } else {
                        self.not_object(not_object(&item));
                    }
                }
            }
            value @ serde_json::Value::Object(_) => self.document(Document {
                source: source.to_owned(),
                index,
                value,
            }),
            other => self.not_object(not_object(&other)),
        }
    }
}

impl Sink for Manifests {
    fn document(&mut self, d: Document) {
        self.documents.push(d);
    }
    fn not_object(&mut self, p: Problem) {
        self.not_objects.push(p);
    }
    fn unreadable(&mut self, p: Problem) {
        self.unreadable.push(p);
    }
}

/// Hands each document on as soon as it is read, keeping only the first problems.
struct Streaming<F> {
    each: F,
    not_object: Option<Problem>,
    unreadable: Option<Problem>,
}

impl<F: FnMut(Document)> Sink for Streaming<F> {
    fn document(&mut self, d: Document) {
        // After a problem the load fails anyway: indexing more would be wasted.
        if self.not_object.is_none() && self.unreadable.is_none() {
            (self.each)(d);
        }
    }
    fn not_object(&mut self, p: Problem) {
        self.not_object.get_or_insert(p);
    }
    fn unreadable(&mut self, p: Problem) {
        self.unreadable.get_or_insert(p);
    }
}

/// `kind: List`, or a typed list (`PodList`, `SecretList`, …) with `items`.
fn is_list(m: &serde_json::Map<String, serde_json::Value>) -> bool {
    let kind = m.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    kind == "List" || kind.ends_with("List") && m.contains_key("items")
}

/// Budget against hostile YAML (alias bombs, deep nesting) well above what manifests need.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // Error snippets quote source lines, which in a Secret manifest may hold credentials.
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
        },
    }
}

/// Parse one YAML (or JSON) document into a JSON value; the error is for people.
pub fn yaml_to_value(text: &str) -> Result<serde_json::Value, String> {
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| {
        let what = describe_yaml_error(&e);
        match e.location().map(|l| l.line()).filter(|&l| l > 0) {
            Some(line) => format!("{what} (line {line})"),
            None => what,
        }
    })
}

/// Parse the text of one file into its documents; `kind: List` items are flattened. A document
/// that cannot be read is reported and the others are still read.
pub fn parse_documents(source: &str, text: &str) -> Manifests {
    let mut out = Manifests::default();
    parse_into(source, text, &mut out);
    out
}

fn parse_into(source: &str, text: &str, out: &mut impl Sink) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with(['{', '[']) {
        let mut json = Manifests::default();
        parse_json(source, text, &mut json);
        // Not JSON but YAML in flow style (`{a: 1}`, or JSON then `---`): read as YAML, unless
        // the file says it is JSON (YAML would forgive its errors, a trailing comma say).
        if !source.ends_with(".json") && !json.unreadable.is_empty() {
            let mut yaml = Manifests::default();
            parse_yaml(source, text, &mut yaml, MAX_ALIAS_NODES_PER_FILE);
            if yaml.unreadable.is_empty() {
                json = yaml;
            }
        }
        // Buffered per file: which reading holds is known only at its end.
        for d in json.documents {
            out.document(d);
        }
        for p in json.not_objects {
            out.not_object(p);
        }
        for p in json.unreadable {
            out.unreadable(p);
        }
    } else {
        parse_yaml(source, text, out, MAX_ALIAS_NODES_PER_FILE);
    }
}

/// Each document on its own, with at most `alias_budget` nodes from aliases in the file.
fn parse_yaml(source: &str, text: &str, out: &mut impl Sink, mut alias_budget: usize) {
    let mut read = 0;
    split_documents(text, |index, doc| {
        if !doc.has_content {
            return ControlFlow::Continue(());
        }
        read += 1;
        if read > MAX_DOCUMENTS_PER_FILE {
            out.unreadable(too_many_documents(source, index));
            return ControlFlow::Break(());
        }
        let mut options = yaml_options();
        // Only a document with `*` can hold an alias; only those spend the file's alias budget.
        let may_alias = doc.text.contains('*');
        if may_alias {
            options.alias_limits.max_total_replayed_events = alias_budget;
        }
        match serde_saphyr::from_str_with_options::<serde_json::Value>(doc.text, options) {
            Ok(v) => {
                if may_alias {
                    alias_budget = alias_budget.saturating_sub(node_count(&v));
                }
                out.push_value(source, index, v);
            }
            Err(e) => {
                let line = e
                    .location()
                    .map(|l| l.line())
                    .filter(|&l| l > 0)
                    .map(|l| doc.first_line + l - 1);
                let message = template_hint(doc.text, doc.first_line, line).unwrap_or_else(|| {
                    let what = describe_yaml_error(&e);
                    match line {
                        Some(n) => format!("{what} (line {n})"),
                        None => what,
                    }
                });
                out.unreadable(Problem {
                    file: source.to_owned(),
                    document: Some(index),
                    message,
                });
            }
        }
        ControlFlow::Continue(())
    });
}

fn too_many_documents(source: &str, index: usize) -> Problem {
    Problem {
        file: source.to_owned(),
        document: Some(index),
        message: format!(
            "more than {MAX_DOCUMENTS_PER_FILE} documents in one file: this one and the rest are not read; split it"
        ),
    }
}

/// JSON: one value or a stream of values, each a document. JSON cannot be resynchronised after an
/// error, so the rest of the file after one is not read.
fn parse_json(source: &str, text: &str, out: &mut impl Sink) {
    let stream = serde_json::Deserializer::from_str(text).into_iter::<StrictJson>();
    for (index, v) in stream.enumerate() {
        if index >= MAX_DOCUMENTS_PER_FILE {
            out.unreadable(too_many_documents(source, index));
            break;
        }
        match v {
            Ok(StrictJson(v)) => out.push_value(source, index, v),
            Err(e) => {
                let line = u64::try_from(e.line()).ok().filter(|&l| l > 0);
                let message = template_hint(text, 1, line).unwrap_or_else(|| e.to_string());
                out.unreadable(Problem {
                    file: source.to_owned(),
                    document: Some(index),
                    message,
                });
                break;
            }
        }
    }
}

/// A JSON value read with duplicate keys refused, as YAML reading does (serde_json would keep the
/// last silently, and the API server refuses them under strict field validation).
struct StrictJson(serde_json::Value);

impl<'de> de::Deserialize<'de> for StrictJson {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(out.into())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {}", quote(&key))));
            }
            let StrictJson(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(out.into())
    }
}

/// One YAML document of a stream: its text (with its `---` line) and where it starts.
struct Chunk<'a> {
    text: &'a str,
    /// 1-based line of the file where `text` starts.
    first_line: u64,
    /// Whether anything but comments and markers is in it.
    has_content: bool,
}

/// Split a YAML stream at its document markers, so that a document that does not parse costs only
/// itself. YAML forbids a line starting with `---` or `...` (then a space or the line's end) inside
/// any scalar or collection, so these lines always are markers. The documents are those YAML
/// counts: every `---` opens one (empty or not), and text before the first `---` is one when it
/// holds more than comments and directives.
fn split_documents(text: &str, mut each: impl FnMut(usize, Chunk<'_>) -> ControlFlow<()>) {
    let mut index = 0;
    let mut emit = |chunk: Chunk<'_>| {
        let flow = each(index, chunk);
        index += 1;
        flow
    };
    let (mut start, mut start_line) = (0, 1);
    let (mut explicit, mut content) = (false, false);
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let line_no = n as u64 + 1;
        let end = offset + line.len();
        if is_marker(line, "---") {
            if explicit || content {
                let chunk = Chunk {
                    text: &text[start..offset],
                    first_line: start_line,
                    has_content: content,
                };
                if emit(chunk).is_break() {
                    return;
                }
                start = offset;
                start_line = line_no;
            }
            // Otherwise only comments or directives came before: they belong to this document.
            explicit = true;
            content = is_content(&line[3..]);
        } else if is_marker(line, "...") {
            if explicit || content {
                let chunk = Chunk {
                    text: &text[start..end],
                    first_line: start_line,
                    has_content: content,
                };
                if emit(chunk).is_break() {
                    return;
                }
            }
            start = end;
            start_line = line_no + 1;
            (explicit, content) = (false, false);
        } else if !content && is_content(line) && (explicit || !line.starts_with('%')) {
            content = true;
        }
        offset = end;
    }
    if explicit || content {
        let _ = emit(Chunk {
            text: &text[start..],
            first_line: start_line,
            has_content: content,
        });
    }
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.starts_with(marker)
        && matches!(
            line.as_bytes().get(3),
            None | Some(b' ' | b'\t' | b'\r' | b'\n')
        )
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The message for a document that does not parse and holds template expressions at or before the
/// place the parser stopped: a Helm or other template, not a manifest.
fn template_hint(text: &str, first_line: u64, error_line: Option<u64>) -> Option<String> {
    let line = text
        .lines()
        .zip(first_line..)
        .find_map(|(l, n)| (l.contains("{{") && error_line.is_none_or(|e| n <= e)).then_some(n))?;
    Some(format!(
        "looks like a template (contains {{{{ … }}}}, line {line}); render it first (helm template / kustomize build)"
    ))
}

/// A serde-saphyr error in words for people: no parser options or internals.
fn describe_yaml_error(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::budget::BudgetBreach;
    use serde_saphyr::{Error as E, MessageFormatter as _};
    match e {
        E::WithSnippet { error, .. } | E::AliasError { error, .. } => describe_yaml_error(error),
        E::DuplicateMappingKey { key: Some(k), .. } => format!("duplicate key {}", quote(k)),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_owned(),
        E::Budget {
            breach: BudgetBreach::Depth { .. },
            ..
        } => format!("nested deeper than {MAX_DEPTH} levels"),
        E::Budget {
            breach: BudgetBreach::Aliases { .. },
            ..
        } => format!("more than {MAX_ALIASES} aliases (*name)"),
        E::Budget {
            breach: BudgetBreach::Anchors { .. },
            ..
        } => format!("more than {MAX_ALIASES} anchors (&name)"),
        E::Budget {
            breach: BudgetBreach::Nodes { .. },
            ..
        } => format!("more than {MAX_NODES} nodes (an alias bomb?)"),
        E::Budget { .. } => "too large or too complex for one manifest (an alias bomb?)".to_owned(),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => format!(
            "aliases (*name) expand to more than {MAX_ALIAS_NODES_PER_FILE} nodes in this file (an alias bomb?)"
        ),
        E::AliasReplayStackDepthExceeded { .. } => "aliases (*name) nest too deeply".to_owned(),
        E::UnknownAnchor { .. } => "alias (*name) of an anchor that is not defined".to_owned(),
        E::NonFiniteFloat { value, .. } => format!("{} is not a finite number", quote(value)),
        E::Eof { .. } => "unexpected end of the document".to_owned(),
        E::InvalidUtf8Input => "not UTF-8 text".to_owned(),
        other => serde_saphyr::UserMessageFormatter
            .format_message(other)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect(),
    }
}

/// A name from the input, quoted and cut short.
fn quote(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() > MAX {
        format!("{:?}…", s.chars().take(MAX).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

fn node_count(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(node_count).sum::<usize>(),
        serde_json::Value::Object(m) => 1 + m.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
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

/// Read every document under the given paths (files, directories recursively, or `-` for stdin),
/// failing at the first file or document that cannot be read or is not an object.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Document>, ManifestError> {
    read_paths(paths)?.into_strict()
}

/// Read every document under the given paths, reporting each file or document that cannot be
/// read and going on. Fails only when a path given cannot be accessed.
pub fn read_paths(paths: &[PathBuf]) -> Result<Manifests, ManifestError> {
    let mut out = Manifests::default();
    read_into(paths, &mut out)?;
    Ok(out)
}

/// Hand every document under the given paths to `each` as it is read, one at a time, so that
/// only one file's text and one document are held at once (all of them at once cost the file
/// store ~6× its index). Fails, after reading everything, at the first file or document that
/// cannot be read or is not an object, as [`load_paths`] does; `each` sees no document after
/// the first problem.
pub fn for_each_document(
    paths: &[PathBuf],
    each: impl FnMut(Document),
) -> Result<(), ManifestError> {
    let mut sink = Streaming {
        each,
        not_object: None,
        unreadable: None,
    };
    read_into(paths, &mut sink)?;
    match sink.unreadable.or(sink.not_object) {
        Some(p) => Err(ManifestError::Unreadable(p)),
        None => Ok(()),
    }
}

fn read_into(paths: &[PathBuf], out: &mut impl Sink) -> Result<(), ManifestError> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)?;
    }
    for f in files {
        match read_input(&f) {
            Ok((name, text)) => parse_into(&name, &text, out),
            Err(p) => out.unreadable(p),
        }
    }
    Ok(())
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

fn read_input(path: &Path) -> Result<(String, String), Problem> {
    let name = path.display().to_string();
    let problem = |message: String| Problem {
        file: name.clone(),
        document: None,
        message,
    };
    let mut buf = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut buf))
    };
    read.map_err(|e| problem(format!("cannot read: {e}")))?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(problem(format!(
            "larger than {} MiB; split it",
            MAX_INPUT_BYTES >> 20
        )));
    }
    let text = String::from_utf8(buf)
        .map_err(|_| problem("not UTF-8 text (a binary file?)".to_owned()))?;
    Ok((name, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(m: &Manifests) -> Vec<&str> {
        m.documents.iter().map(Document::kind).collect()
    }

    /// Every message a person sees, checked for parser-library wording.
    fn assert_for_people(m: &Manifests) {
        for p in m.unreadable.iter().chain(&m.not_objects) {
            for internal in [
                "DuplicateKeyPolicy",
                "Options",
                "policy",
                "Budget",
                "breach",
            ] {
                assert!(!p.message.contains(internal), "{p}");
            }
        }
    }

    #[test]
    fn multi_document_yaml_and_lists() {
        let text = "kind: Pod\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- kind: Secret\n- kind: ServiceAccount\n";
        let m = parse_documents("f.yaml", text);
        assert_eq!(kinds(&m), ["Pod", "Secret", "ServiceAccount"]);
        // The empty document between the two `---` counts, as YAML counts it.
        assert_eq!(
            m.documents.iter().map(|d| d.index).collect::<Vec<_>>(),
            [0, 2, 2]
        );
        assert_eq!(m.documents[0].to_string(), "f.yaml (document 0)");
        assert!(m.unreadable.is_empty() && m.not_objects.is_empty());
    }

    #[test]
    fn document_boundaries_as_yaml_draws_them() {
        let idx = |text: &str| {
            let m = parse_documents("f", text);
            assert!(m.unreadable.is_empty(), "{text:?}: {:?}", m.unreadable);
            m.documents
                .iter()
                .map(|d| (d.index, d.kind().to_owned()))
                .collect::<Vec<_>>()
        };
        let pair = |i: usize, k: &str| (i, k.to_owned());
        // Helm's output: a leading `---` and `# Source:` comments open document 0.
        assert_eq!(
            idx("---\n# Source: c/templates/a.yaml\nkind: A\n---\n# Source: c/templates/b.yaml\nkind: B\n"),
            [pair(0, "A"), pair(1, "B")]
        );
        // Comments and a directive before the first `---` belong to it.
        assert_eq!(idx("# top\n%YAML 1.2\n---\nkind: A\n"), [pair(0, "A")]);
        // `...` ends a document; a bare document may follow.
        assert_eq!(idx("kind: A\n...\nkind: B\n"), [pair(0, "A"), pair(1, "B")]);
        // Content on the marker line, CRLF line ends, a byte-order mark.
        assert_eq!(
            idx("\u{feff}--- {kind: A}\r\n--- \r\nkind: B\r\n"),
            [pair(0, "A"), pair(1, "B")]
        );
        // `---` indented inside a block scalar is text, not a marker; `----` is not one either.
        assert_eq!(
            idx("kind: A\ndata:\n  f: |\n    ---\n    x\n  g: ----\n---\nkind: B\n"),
            [pair(0, "A"), pair(1, "B")]
        );
        // Separators only, comments only, nothing: no documents and no errors.
        for empty in ["", "---\n", "---\n---\n---\n", "# only a comment\n", "\n\n"] {
            assert!(idx(empty).is_empty(), "{empty:?}");
        }
        // Anchors and aliases inside a document still work.
        let m = parse_documents("f", "kind: A\nx: &v [1, 2]\ny: *v\n");
        assert_eq!(m.documents[0].value["y"], serde_json::json!([1, 2]));
    }

    #[test]
    fn a_bad_document_costs_only_itself_and_quotes_no_source() {
        let text = "kind: Pod\n---\nkind: Secret\nstringData:\n  password: \"hunter2-planted\n---\nkind: Pod\nmetadata: {name: b}\n";
        let m = parse_documents("f.yaml", text);
        assert_eq!(kinds(&m), ["Pod", "Pod"]);
        assert_eq!(m.documents[1].index, 2);
        assert_eq!(m.unreadable.len(), 1, "{:?}", m.unreadable);
        let p = &m.unreadable[0];
        assert_eq!((p.file.as_str(), p.document), ("f.yaml", Some(1)));
        assert!(!p.message.contains("hunter2-planted"), "{p}");
        assert!(p.to_string().starts_with("f.yaml (document 1): "), "{p}");
        assert_for_people(&m);
    }

    #[test]
    fn duplicate_keys_are_named_with_their_line_in_the_file() {
        let text = "kind: A\n---\n# Source: x\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n---\nkind: C\n";
        let m = parse_documents("f.yaml", text);
        assert_eq!(kinds(&m), ["A", "C"]);
        assert_eq!(m.unreadable.len(), 1);
        assert_eq!(m.unreadable[0].document, Some(1));
        assert_eq!(m.unreadable[0].message, "duplicate key \"name\" (line 8)");
        assert_for_people(&m);
        // JSON too: serde_json alone would keep the last value silently.
        let m = parse_documents("f.json", "{\"kind\": \"Pod\",\n \"kind\": \"Secret\"}");
        assert!(m.documents.is_empty());
        assert!(
            m.unreadable[0]
                .message
                .starts_with("duplicate key \"kind\" at line 2"),
            "{:?}",
            m.unreadable
        );
        // A long key is cut short.
        let long = "k".repeat(500);
        let m = parse_documents("f", &format!("{long}: 1\n{long}: 2\n"));
        assert!(m.unreadable[0].message.len() < 120, "{:?}", m.unreadable);
    }

    #[test]
    fn templates_are_named_as_templates() {
        let helm = "{{- if .Values.serviceAccount.create -}}\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ include \"app.fullname\" . }}\n{{- end }}\n";
        let m = parse_documents("sa.yaml", helm);
        assert!(m.documents.is_empty());
        assert_eq!(
            m.unreadable[0].message,
            "looks like a template (contains {{ … }}, line 1); render it first (helm template / kustomize build)"
        );
        let m = parse_documents(
            "d.yaml",
            "kind: A\n---\napiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: {{ .Values.replicas }}\n",
        );
        assert_eq!(kinds(&m), ["A"]);
        assert_eq!(m.unreadable[0].document, Some(1));
        assert!(
            m.unreadable[0]
                .message
                .contains("template (contains {{ … }}, line 6)"),
            "{:?}",
            m.unreadable
        );
        // Rendered output may carry `{{ }}` in strings (alert templates): that is data.
        let m = parse_documents(
            "rule.yaml",
            "kind: PrometheusRule\nspec:\n  summary: \"{{ $labels.instance }} down\"\n",
        );
        assert_eq!(kinds(&m), ["PrometheusRule"]);
        // An error before any `{{` is that error, not a template.
        let m = parse_documents("x.yaml", "a: 1\na: 2\nb: \"{{ x }}\"\n");
        assert!(
            !m.unreadable[0].message.contains("template"),
            "{:?}",
            m.unreadable
        );
    }

    #[test]
    fn yaml_that_is_not_an_object_is_set_apart() {
        let m = parse_documents(
            "f",
            "- 1\n- 2\n---\njust a string\n---\n42\n---\nkind: Pod\n",
        );
        assert_eq!(kinds(&m), ["Pod"]);
        assert_eq!(m.documents[0].index, 3);
        assert!(m.unreadable.is_empty());
        let what: Vec<_> = m
            .not_objects
            .iter()
            .map(|p| (p.document, p.message.as_str()))
            .collect();
        assert_eq!(
            what,
            [
                (Some(0), "expected an object, found a list"),
                (Some(1), "expected an object, found a string"),
                (Some(2), "expected an object, found a number"),
            ]
        );
        // A values file or a CI pipeline is an object without a kind: a document of no kind.
        let m = parse_documents("values.yaml", "replicaCount: 1\nimage:\n  tag: \"\"\n");
        assert_eq!(kinds(&m), [""]);
        // Strict reading (the file store) refuses what is not an object, as before.
        assert!(matches!(
            parse_documents("f", "- 1\n").into_strict(),
            Err(ManifestError::Unreadable(Problem {
                document: Some(0),
                ..
            }))
        ));
    }

    #[test]
    fn json_input() {
        let m = parse_documents("f.json", r#"{"kind":"PodList","items":[{"kind":"Pod"}]}"#);
        assert_eq!(kinds(&m), ["Pod"]);
        let m = parse_documents("f.json", "{bad");
        assert_eq!(m.unreadable.len(), 1);
        assert_eq!(m.unreadable[0].document, Some(0));
        // A stream of values, as `jq` writes them; JSON cannot resume after an error.
        let m = parse_documents(
            "f.json",
            "{\"kind\":\"A\"}\n{\"kind\":\"B\"}\n{\"kind\": }\n{\"kind\":\"D\"}\n",
        );
        assert_eq!(kinds(&m), ["A", "B"]);
        assert_eq!(m.unreadable[0].document, Some(2));
        let m = parse_documents("f.json", "[1, 2]");
        assert_eq!(m.not_objects.len(), 1);
        // YAML in flow style is not JSON, and is read as YAML.
        let m = parse_documents(
            "f.yaml",
            "{kind: Pod, metadata: {name: a}}\n---\n{kind: B}\n",
        );
        assert_eq!(kinds(&m), ["Pod", "B"]);
        let m = parse_documents("f.yaml", "{\"kind\": \"A\"}\n---\nkind: B\n");
        assert_eq!(kinds(&m), ["A", "B"]);
        // A .json file stays JSON: YAML would forgive the trailing comma.
        assert_eq!(
            parse_documents("f.json", "{\"kind\": \"A\",}")
                .unreadable
                .len(),
            1
        );
        assert_eq!(kinds(&parse_documents("-", "{\"kind\": \"A\",}")), ["A"]);
        let m = parse_documents(
            "t.json",
            "{\"kind\": \"Pod\", \"image\": {{ .Values.image }}}",
        );
        assert!(m.unreadable[0].message.starts_with("looks like a template"));
    }

    #[test]
    fn malformed_and_adversarial_yaml_is_an_error_in_words() {
        let one = |text: &str| {
            let m = parse_documents("f", text);
            assert_for_people(&m);
            assert!(m.documents.is_empty(), "{text:?}");
            assert_eq!(m.unreadable.len(), 1, "{text:?}");
            m.unreadable[0].message.clone()
        };
        assert!(one("a: [1, 2").contains("line 1"));
        assert!(one("a: b: c\n").contains("line 1"));
        assert_eq!(
            one("a: *nowhere\n"),
            "alias (*name) of an anchor that is not defined (line 1)"
        );
        assert_eq!(one("a: .nan\n"), "\".nan\" is not a finite number (line 1)");
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
        let msg = one(&bomb);
        assert!(msg.contains("alias bomb"), "{msg}");
        let many_aliases = format!("a: &a 1\nb: [{}]\n", vec!["*a"; MAX_ALIASES + 1].join(", "));
        assert!(one(&many_aliases).starts_with("more than 1000 aliases"));
        let deep = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
        let msg = one(&format!("a: {deep}"));
        // The parser's own recursion guard trips before the depth budget on flow collections.
        assert!(
            msg.starts_with("nested deeper than 64 levels")
                || msg.starts_with("recursion limit exceeded"),
            "{msg}"
        );
        assert!(one(&deep).contains("recursion limit"));
        let block_deep: String = (0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(one(&block_deep).starts_with("nested deeper"));
    }

    #[test]
    fn nesting_up_to_the_limit_reads_within_a_small_stack() {
        // The test thread has a 2 MiB stack, as tokio's workers (serve's reloads) have, and this
        // is a debug build, whose frames are the largest.
        let forms: [fn(usize) -> String; 5] = [
            |n| (0..n).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
            |n| format!("{}1\n", "- ".repeat(n)),
            |n| format!("a: {}1{}", "{a: ".repeat(n - 1), "}".repeat(n - 1)),
            |n| format!("a: {}1{}", "[".repeat(n - 1), "]".repeat(n - 1)),
            // YAML in flow style from the first character (not JSON).
            |n| format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)),
        ];
        for (i, form) in forms.iter().enumerate() {
            let m = parse_documents("f", &form(MAX_DEPTH));
            assert!(m.unreadable.is_empty(), "form {i}: {:?}", m.unreadable);
            let m = parse_documents("f", &form(MAX_DEPTH + 1));
            assert_eq!(m.unreadable.len(), 1, "form {i}");
        }
    }

    #[test]
    fn documents_per_file_are_bounded() {
        let text = "kind: A\n---\n".repeat(MAX_DOCUMENTS_PER_FILE + 5);
        let m = parse_documents("f", &text);
        assert_eq!(m.documents.len(), MAX_DOCUMENTS_PER_FILE);
        assert_eq!(m.unreadable.len(), 1);
        assert_eq!(m.unreadable[0].document, Some(MAX_DOCUMENTS_PER_FILE));
        // Empty documents cost nothing and do not count.
        let m = parse_documents("f", &format!("{}kind: A\n", "---\n".repeat(100_000)));
        assert_eq!(m.documents.len(), 1);
        assert_eq!(m.documents[0].index, 99_999);
    }

    #[test]
    fn alias_budget_holds_for_the_whole_file() {
        // Each document expands to ~11k nodes, well within one document's limit; twenty of them
        // would be 220k, so a file budget of 50k (production: MAX_ALIAS_NODES_PER_FILE, too slow
        // for a debug-build test) stops the later ones.
        let doc = "kind: A\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
        let text = vec![doc; 20].join("---\n");
        let read = |text: &str| {
            let mut m = Manifests::default();
            parse_yaml("f", text, &mut m, 50_000);
            m
        };
        let m = read(&text);
        assert_for_people(&m);
        assert!(
            (3..=5).contains(&m.documents.len()),
            "{}",
            m.documents.len()
        );
        assert_eq!(m.documents.len() + m.unreadable.len(), 20);
        assert!(m
            .unreadable
            .iter()
            .all(|p| p.message.contains("alias bomb")));
        // Documents without aliases are still read after the budget is spent.
        let m = read(&format!("{text}---\nkind: B\nimage: \"*\"\n"));
        assert_eq!(m.documents.last().map(Document::kind), Some("B"));
    }

    #[test]
    fn yaml_to_value_errors_are_for_people() {
        let e = yaml_to_value("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e, "duplicate key \"a\" (line 2)");
    }

    #[test]
    fn directories_are_walked_and_bad_files_reported_without_stopping() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: Pod\n").unwrap();
        std::fs::write(dir.path().join("b.yml"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::write(dir.path().join("sub/c.json"), "{\"kind\":\"Secret\"}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "kind: Pod\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "kind: Pod\n").unwrap();
        // Oversized: sparse, so the test writes nothing real.
        let big = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
        big.set_len(MAX_INPUT_BYTES + 1).unwrap();
        let m = read_paths(&[dir.path().to_owned()]).unwrap();
        assert_eq!(kinds(&m), ["Pod", "Secret"]);
        let problems: Vec<_> = m
            .unreadable
            .iter()
            .map(|p| {
                (
                    Path::new(&p.file).file_name().unwrap().to_owned(),
                    p.document,
                    p.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            problems,
            [
                ("b.yml".into(), None, "not UTF-8 text (a binary file?)"),
                ("big.yaml".into(), None, "larger than 32 MiB; split it"),
            ]
        );
        // Strictly (the file store): the first problem.
        assert!(matches!(
            load_paths(&[dir.path().to_owned()]),
            Err(ManifestError::Unreadable(Problem { document: None, .. }))
        ));
        // A path given that does not exist is an error of the call, not of a file.
        assert!(matches!(
            read_paths(&[dir.path().join("missing")]),
            Err(ManifestError::Io { .. })
        ));
    }

    #[test]
    fn streaming_hands_on_what_reading_collects_and_fails_as_strictly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "kind: Namespace\nmetadata: {name: a}\n---\nkind: SecretList\nitems:\n- kind: Secret\n  metadata: {name: s1}\n- kind: Secret\n  metadata: {name: s2}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"{"kind": "ServiceAccount", "metadata": {"name": "sa"}} {"kind": "Pod"}"#,
        )
        .unwrap();
        let paths = [dir.path().to_owned()];
        let mut streamed = Vec::new();
        for_each_document(&paths, |d| streamed.push(d)).unwrap();
        assert_eq!(streamed, read_paths(&paths).unwrap().documents);
        assert_eq!(
            streamed.iter().map(Document::kind).collect::<Vec<_>>(),
            ["Namespace", "Secret", "Secret", "ServiceAccount", "Pod"]
        );

        // A scalar document, then an unreadable file: the unreadable one is reported, as
        // `load_paths` does, and nothing after the first problem is handed on.
        std::fs::write(
            dir.path().join("a.yaml"),
            "kind: Namespace\n---\njust text\n---\nkind: Secret\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("c.yaml"), "kind: Secret\nkind: Secret\n").unwrap();
        let mut kinds = Vec::new();
        let err = for_each_document(&paths, |d| kinds.push(d.kind().to_owned())).unwrap_err();
        let strict = load_paths(&paths).unwrap_err();
        assert_eq!(err.to_string(), strict.to_string());
        assert!(err.to_string().contains("c.yaml"), "{err}");
        assert_eq!(kinds, ["Namespace"]);
    }
}
