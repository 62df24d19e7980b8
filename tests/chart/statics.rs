//! Static checks: Chart.yaml, the documentation of every value, the schema, the README values table.

use super::*;
use crate::contract::{items, truthy, yaml_file};
use serde_json::Value;

#[test]
fn chart_app_version_is_the_crate_version() -> TestResult {
    let chart = yaml_file("Chart.yaml")?;
    let crate_version = env!("CARGO_PKG_VERSION");
    let mut failures = Vec::new();
    if chart["appVersion"] != crate_version {
        failures.push(format!(
            "Chart.yaml appVersion {} is not the crate version {crate_version:?}",
            chart["appVersion"]
        ));
    }
    if chart["apiVersion"] != "v2" {
        failures.push(format!(
            "Chart.yaml apiVersion {} is not v2",
            chart["apiVersion"]
        ));
    }
    check_all("Chart.yaml", failures)
}

/// After `#`, at most one blank, `--`, at most one blank: the rest of a `# --` doc comment.
fn doc_comment(line: &str) -> Option<&str> {
    fn blank(s: &str) -> &str {
        s.strip_prefix(|c: char| c.is_whitespace()).unwrap_or(s)
    }
    Some(blank(blank(line.strip_prefix('#')?).strip_prefix("--")?))
}

/// A `key:` line of values.yaml: its indent and key.
fn key_line(raw: &str) -> Option<(usize, String)> {
    let rest = raw.trim_start();
    let indent = raw.len() - rest.len();
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "_.-/\"".contains(c)))?;
    let after = rest[end..].strip_prefix(':')?;
    if end == 0 || after.starts_with(|c: char| !c.is_whitespace()) {
        return None;
    }
    Some((indent, rest[..end].trim_matches('"').to_owned()))
}

/// The `# --` doc comment of each dotted key of values.yaml, and every dotted key in file order.
fn value_docs(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let (mut docs, mut keys) = (BTreeMap::new(), Vec::new());
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut in_doc = false;
    for raw in text.lines() {
        let s = raw.trim();
        if s.starts_with('#') {
            if let Some(first) = doc_comment(s) {
                pending = vec![first.to_owned()];
                in_doc = true;
            } else if in_doc {
                pending.push(s.trim_start_matches('#').trim().to_owned());
            }
            continue;
        }
        let key = if s.is_empty() || s.starts_with('-') {
            None
        } else {
            key_line(raw)
        };
        if let Some((indent, key)) = key {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, key));
            let dotted = stack
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>()
                .join(".");
            if !pending.is_empty() {
                docs.insert(dotted.clone(), pending.join(" ").trim().to_owned());
            }
            keys.push(dotted);
        }
        pending.clear();
        in_doc = false;
    }
    (docs, keys)
}

/// Dotted paths of the leaves of `values` (empty maps, lists and scalars).
fn leaf_paths(values: &Value, prefix: &str, out: &mut Vec<String>) {
    match values.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, v) in m {
                leaf_paths(v, &format!("{prefix}{k}."), out);
            }
        }
        _ => out.push(prefix.trim_end_matches('.').to_owned()),
    }
}

#[test]
fn every_value_has_a_doc_comment() -> TestResult {
    let (docs, _) = value_docs(&read(&chart_dir().join("values.yaml"))?);
    let mut leaves = Vec::new();
    leaf_paths(&yaml_file("values.yaml")?, "", &mut leaves);
    if leaves.len() < 20 {
        return Err(format!(
            "values.yaml has only {} values: {leaves:?}",
            leaves.len()
        ));
    }
    let undocumented: Vec<&String> = leaves
        .iter()
        .filter(|leaf| {
            let parts: Vec<&str> = leaf.split('.').collect();
            !(1..=parts.len()).any(|i| docs.contains_key(&parts[..i].join(".")))
        })
        .collect();
    if undocumented.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "values.yaml values without a `# --` comment (on them or a parent): {undocumented:?}"
        ))
    }
}

fn schema() -> Result<Value, String> {
    serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
        .map_err(|e| format!("values.schema.json: {e}"))
}

fn schema_at<'a>(schema: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(schema, |node, part| node["properties"].get(part))
}

#[test]
fn values_schema_is_draft_07_and_describes_every_documented_value() -> TestResult {
    let schema = schema()?;
    let (docs, _) = value_docs(&read(&chart_dir().join("values.yaml"))?);
    let mut failures = Vec::new();
    if !schema["$schema"]
        .as_str()
        .is_some_and(|s| s.starts_with("http://json-schema.org/draft-07/schema"))
    {
        failures.push(format!("$schema {} is not draft-07", schema["$schema"]));
    }
    for key in docs.keys() {
        match schema_at(&schema, key) {
            None => failures.push(format!("`{key}` is not described")),
            Some(node) if !truthy(&node["properties"]) && node.get("default").is_none() => {
                failures.push(format!("`{key}` has no default"))
            }
            Some(_) => {}
        }
    }
    check_all("values.schema.json", failures)
}

/// The Type column of the README for a schema node.
fn schema_type(schema: &Value, node: &Value) -> String {
    if let Some(r) = node["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return schema_type(schema, &schema["definitions"][name]);
    }
    if let Some(e) = node["enum"].as_array() {
        return e
            .iter()
            .map(|x| format!("`{x}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let alternatives = node.get("oneOf").or_else(|| node.get("anyOf"));
    if let (Some(alts), None) = (alternatives, node.get("type")) {
        // With a type, oneOf/anyOf only constrain it.
        let names: BTreeSet<String> = items(alts).map(|n| schema_type(schema, n)).collect();
        return names.into_iter().collect::<Vec<_>>().join(" or ");
    }
    match &node["type"] {
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        t if *t == "array" && node.get("items").is_some() => {
            format!("list of {}", schema_type(schema, &node["items"]))
        }
        _ if node.get("const").is_some() => format!("`{}`", node["const"]),
        Value::String(t) if !t.is_empty() => t.clone(),
        _ => "any".to_owned(),
    }
}

/// The cells of a Markdown table row, split at `|` not escaped as `\|`.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut prev = ' ';
    for c in inner.chars() {
        if c == '|' && prev != '\\' {
            out.push(String::new());
        } else if let Some(cell) = out.last_mut() {
            cell.push(c);
        }
        prev = c;
    }
    out.iter().map(|c| c.trim().to_owned()).collect()
}

/// JSON as the README's Default column shows it: `, ` and `: ` separators.
fn spaced_json(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(spaced_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), spaced_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => scalar.to_string(),
    }
}

/// The README values table: one row per documented value, in values.yaml's order, its type from the
/// schema, its default from values.yaml and the `# --` comment. Set `PULLGATE_WRITE_CHART_README` to
/// rewrite a stale table (a default already shown keeps its text, whatever its key order).
#[test]
fn chart_readme_values_table_is_current() -> TestResult {
    let (start, end) = ("<!-- values-table:start -->", "<!-- values-table:end -->");
    let path = chart_dir().join("README.md");
    let readme = read(&path)?;
    let (head, rest) = readme
        .split_once(start)
        .ok_or_else(|| format!("charts/pullgate/README.md lacks the {start} marker"))?;
    let (table, tail) = rest
        .split_once(end)
        .ok_or_else(|| format!("charts/pullgate/README.md lacks the {end} marker"))?;
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(cells)
        .collect();
    let schema = schema()?;
    let values = yaml_file("values.yaml")?;
    let (docs, keys) = value_docs(&read(&chart_dir().join("values.yaml"))?);
    let mut fresh = vec![
        "| Key | Type | Default | Description |".to_owned(),
        "|-----|------|---------|-------------|".to_owned(),
    ];
    // A default already shown keeps its text: it is JSON, compared as data (key order, spacing).
    let shown: BTreeMap<&str, &String> = rows
        .iter()
        .filter(|r| r.len() == 4)
        .map(|r| (r[0].as_str(), &r[2]))
        .collect();
    let mut failures = Vec::new();
    for key in keys.iter().filter(|k| docs.contains_key(*k)) {
        let default = key.split('.').fold(&values, |v, part| &v[part]);
        let node = schema_at(&schema, key).unwrap_or(&Value::Null);
        let cell = shown
            .get(format!("`{key}`").as_str())
            .copied()
            .filter(|cell| {
                cell.strip_prefix('`')
                    .and_then(|c| c.strip_suffix('`'))
                    .and_then(|j| serde_json::from_str::<Value>(&j.replace("\\|", "|")).ok())
                    .as_ref()
                    == Some(default)
            });
        let want = [
            format!("`{key}`"),
            schema_type(&schema, node),
            cell.cloned()
                .unwrap_or_else(|| format!("`{}`", spaced_json(default).replace('|', "\\|"))),
            docs[key].replace('|', "\\|"),
        ];
        let at = fresh.len() - 2;
        if rows.get(at).is_none_or(|r| r[..] != want[..]) {
            failures.push(format!(
                "row {at} is {:?}, want | {} |",
                rows.get(at),
                want.join(" | ")
            ));
        }
        fresh.push(format!("| {} |", want.join(" | ")));
    }
    if rows.len() + 2 != fresh.len() {
        failures.push(format!(
            "{} rows for {} documented values",
            rows.len(),
            fresh.len() - 2
        ));
    }
    if failures.is_empty() {
        return Ok(());
    }
    if std::env::var_os("PULLGATE_WRITE_CHART_README").is_some() {
        let text = format!("{head}{start}\n{}\n{end}{tail}", fresh.join("\n"));
        return fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()));
    }
    check_all(
        "charts/pullgate/README.md values table is stale (PULLGATE_WRITE_CHART_README=1 cargo test --test chart chart_readme rewrites it)",
        failures,
    )
}

#[test]
fn metrics_txt_holds_unique_pullgate_names() -> TestResult {
    let text = read(&chart_dir().join("metrics.txt"))?;
    let names: Vec<&str> = text.split_whitespace().collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    let bad: Vec<&&str> = names
        .iter()
        .filter(|n| {
            !n.strip_prefix("pullgate_").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
        })
        .collect();
    if names.is_empty() || unique.len() != names.len() || !bad.is_empty() {
        return Err(format!(
            "metrics.txt must hold unique pullgate_[a-z0-9_]+ names: {} names, {} unique, bad {bad:?}",
            names.len(),
            unique.len()
        ));
    }
    Ok(())
}

#[test]
fn doc_and_key_scanners_work() {
    assert_eq!(doc_comment("# -- Replicas."), Some("Replicas."));
    assert_eq!(doc_comment("#--x"), Some("x"));
    assert_eq!(doc_comment("# plain"), None);
    assert_eq!(key_line("  image:"), Some((2, "image".to_owned())));
    assert_eq!(key_line("\"a.b/c\": 1"), Some((0, "a.b/c".to_owned())));
    assert_eq!(key_line("url: http://x"), Some((0, "url".to_owned())));
    assert_eq!(key_line("a:b"), None);
    let (docs, keys) = value_docs(
        "# -- Top.\n# More.\ntop:\n  # -- Inner.\n  inner: 1\n  bare: 2\n\n# -- Gone.\n\nlost: 3\n",
    );
    assert_eq!(keys, ["top", "top.inner", "top.bare", "lost"]);
    assert_eq!(
        docs,
        BTreeMap::from([
            ("top".to_owned(), "Top. More.".to_owned()),
            ("top.inner".to_owned(), "Inner.".to_owned()),
        ])
    );
    assert_eq!(
        cells(r#"| `a` | `"x"` \| `"y"` | `1` | d |"#),
        ["`a`", r#"`"x"` \| `"y"`"#, "`1`", "d"]
    );
}
