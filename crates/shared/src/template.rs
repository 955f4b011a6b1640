//! Concurrency key templates: `$workspace` and `$args[name]` / `$args[a.b]`,
//! resolved once at enqueue (docs/contract.md, "Concurrency limits").

use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Workspace,
    Arg(Vec<String>),
}

/// A parsed key template. Parsing checks the syntax once, at config load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    parts: Vec<Part>,
}

impl KeyTemplate {
    pub fn parse(source: &str) -> Result<Self> {
        let err = |reason: String| Error::Template {
            template: source.to_string(),
            reason,
        };
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(pos) = rest.find('$') {
            text.push_str(&rest[..pos]);
            rest = &rest[pos..];
            if let Some(after) = rest.strip_prefix("$workspace") {
                flush(&mut text, &mut parts);
                parts.push(Part::Workspace);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("$args[") {
                let end = after.find(']').ok_or_else(|| {
                    err(format!(
                        "unclosed `$args[` at byte {}",
                        source.len() - rest.len()
                    ))
                })?;
                let path: Vec<String> = after[..end].split('.').map(str::to_string).collect();
                if path.iter().any(|p| p.is_empty()) {
                    return Err(err(format!(
                        "empty argument name in `$args[{}]`",
                        &after[..end]
                    )));
                }
                flush(&mut text, &mut parts);
                parts.push(Part::Arg(path));
                rest = &after[end + 1..];
            } else {
                return Err(err(format!(
                    "unknown placeholder at byte {}: only `$workspace` and `$args[name]` exist",
                    source.len() - rest.len()
                )));
            }
        }
        text.push_str(rest);
        flush(&mut text, &mut parts);
        if parts.is_empty() {
            return Err(err("the key is empty".into()));
        }
        Ok(KeyTemplate {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Resolves the key for one job. A missing argument is an error naming it.
    pub fn render(&self, workspace: &str, args: &Value) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Workspace => out.push_str(workspace),
                Part::Arg(path) => {
                    let mut v = args;
                    for name in path {
                        v = v.get(name).ok_or_else(|| Error::Template {
                            template: self.source.clone(),
                            reason: format!("the job has no argument `{}`", path.join(".")),
                        })?;
                    }
                    match v {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn flush(text: &mut String, parts: &mut Vec<Part>) {
    if !text.is_empty() {
        parts.push(Part::Text(std::mem::take(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, args: Value) -> Result<String> {
        KeyTemplate::parse(t)?.render("acme", &args)
    }

    #[test]
    fn substitutes_workspace_and_args() {
        let args = json!({"account": "a-1", "n": 7, "ok": true, "o": {"id": "x", "list": [1, 2]}});
        assert_eq!(
            render("$workspace/crm/$args[account]", args.clone()).unwrap(),
            "acme/crm/a-1"
        );
        assert_eq!(
            render("n=$args[n],$args[ok]", args.clone()).unwrap(),
            "n=7,true"
        );
        assert_eq!(render("$args[o.id]", args.clone()).unwrap(), "x");
        assert_eq!(render("$args[o.list]", args.clone()).unwrap(), "[1,2]");
        assert_eq!(
            render("$args[o]", args).unwrap(),
            r#"{"id":"x","list":[1,2]}"#
        );
        assert_eq!(render("static", json!({})).unwrap(), "static");
    }

    #[test]
    fn missing_argument_is_named() {
        let e = render("k/$args[account]", json!({"other": 1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`account`"), "{e}");
        let e = render("k/$args[a.b]", json!({"a": {}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a.b`"), "{e}");
    }

    #[test]
    fn bad_syntax_is_refused() {
        for bad in ["$args[x", "$foo", "$args[]", "$args[a..b]", ""] {
            assert!(
                KeyTemplate::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
