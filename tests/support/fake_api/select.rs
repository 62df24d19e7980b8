//! Field and label selectors with the API server's syntax and semantics
//! (apimachinery `fields.ParseSelector` and `labels.Parse`).

use super::status::ApiError;
use std::collections::BTreeMap;

/// A parsed `fieldSelector`: all terms must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parse `a=b,c!=d` (`==` too; `\,` `\=` `\\` escape), refusing fields the resource does not
    /// support, as the server does.
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in split_unescaped(s, ',') {
            if term.is_empty() {
                continue;
            }
            let (key, equal, value) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], false, &term[i + 2..])
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], true, &term[i + 2..])
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], true, &term[i + 1..])
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let key = key.trim();
            if !supported.contains(&key) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
            terms.push((key.to_owned(), equal, unescape(value)));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether an object's selectable fields satisfy the selector (absent fields are "").
    pub fn matches(&self, fields: &[(&'static str, String)]) -> bool {
        self.terms.iter().all(|(key, equal, want)| {
            let have = fields
                .iter()
                .find(|(k, _)| k == key)
                .map_or("", |(_, v)| v.as_str());
            (have == want) == *equal
        })
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if c == sep && !escaped {
            out.push(std::mem::take(&mut current));
            continue;
        }
        escaped = !escaped && c == '\\';
        current.push(c);
    }
    out.push(current);
    out
}

fn find_unescaped(s: &str, op: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(op) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if !escaped && c == '\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed `labelSelector`: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<LabelReq>,
}

impl LabelSelector {
    /// Parse `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad =
            |what: &str| ApiError::bad_request(format!("unable to parse requirement: {what}"));
        let mut reqs = Vec::new();
        // Split on commas outside parentheses.
        let mut terms = Vec::new();
        let mut current = String::new();
        let mut depth = 0usize;
        for c in s.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    terms.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        terms.push(current);
        for term in terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, ApiError> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad(term))?;
                Ok(inner
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .collect())
            };
            let req = if let Some(key) = term.strip_prefix('!') {
                LabelReq::NotExists(key.trim().to_owned())
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotIn(k.trim().to_owned(), vec![v.trim().to_owned()])
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelReq::In(k.trim().to_owned(), vec![v.trim().to_owned()])
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                LabelReq::NotIn(k.trim().to_owned(), set(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                LabelReq::In(k.trim().to_owned(), set(rest)?)
            } else if term.contains(|c: char| c.is_whitespace() || "<>()".contains(c)) {
                return Err(bad(term));
            } else {
                LabelReq::Exists(term.to_owned())
            };
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether labels satisfy the selector (`!=` and `notin` hold when the label is absent).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| match r {
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn field_selectors() {
        let supported = ["metadata.name", "metadata.namespace", "type"];
        let s = FieldSelector::parse("type=kubernetes.io/dockerconfigjson", &supported).unwrap();
        assert!(s.matches(&fields(&[("type", "kubernetes.io/dockerconfigjson")])));
        assert!(!s.matches(&fields(&[("type", "Opaque")])));
        let s = FieldSelector::parse("metadata.name!=a,type==x", &supported).unwrap();
        assert!(s.matches(&fields(&[("metadata.name", "b"), ("type", "x")])));
        assert!(!s.matches(&fields(&[("metadata.name", "a"), ("type", "x")])));
        let s = FieldSelector::parse(r"metadata.name=a\,b", &supported).unwrap();
        assert!(s.matches(&fields(&[("metadata.name", "a,b")])));
        assert!(FieldSelector::parse("", &supported).unwrap().is_empty());
        let e = FieldSelector::parse("spec.x=1", &supported).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "field label not supported: spec.x")
        );
        assert_eq!(
            FieldSelector::parse("type", &supported).unwrap_err().code,
            400
        );
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(&labels);
        assert!(ok("app=web") && ok("app==web") && ok("app") && ok("!tier") && ok("tier!=x"));
        assert!(ok("app in (web, api)") && ok("app notin (api)") && ok("tier notin (a)"));
        assert!(
            !ok("app=api") && !ok("!app") && !ok("tier") && !ok("app in (api)") && !ok("app,tier")
        );
        assert!(LabelSelector::parse("app in web").is_err());
    }
}
