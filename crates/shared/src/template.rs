//! Concurrency key templates: `$workspace` and `$args[name]` / `$args[a.b]`,
//! resolved once at enqueue (docs/contract.md, "Concurrency limits").

use serde_json::Value;

use crate::error::{Error, Result};

/// The longest concurrency key, in bytes. A key rides in every call that
/// admits, ends or recovers its jobs, and names Redis keys.
pub const MAX_KEY_BYTES: usize = 512;

/// Why a text cannot be part of a key or a workspace, if it cannot.
pub fn control_char(text: &str) -> Option<String> {
    text.chars()
        .find(|c| c.is_control())
        .map(|c| format!("holds a control character (U+{:04X})", c as u32))
}

/// Checks a name that goes into keys or records: not empty, at most `max`
/// bytes, no control character; the error names `what`.
pub fn check_text(what: &str, value: &str, max: usize) -> Result<()> {
    let bad = |reason: String| Err(Error::invalid(what, reason));
    if value.is_empty() {
        return bad("must not be empty".into());
    }
    if value.len() > max {
        return bad(format!("is {} bytes, more than {max}", value.len()));
    }
    if let Some(why) = control_char(value) {
        return bad(why);
    }
    Ok(())
}

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
    /// Parses a template: plain text, `$workspace` and `$args[name]`. An
    /// [`Error::Template`] says what is wrong.
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

    /// The template as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Resolves the key for one job. A missing argument, or a value that
    /// would make a bad key, is an error naming it.
    pub fn render(&self, workspace: &str, args: &Value) -> Result<String> {
        let fail = |reason: String| Error::Template {
            template: self.source.clone(),
            reason,
        };
        let mut out = String::new();
        let mut from = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Workspace => out.push_str(workspace),
                Part::Arg(path) => {
                    let name = path.join(".");
                    let mut v = args;
                    for step in path {
                        v = v
                            .get(step)
                            .ok_or_else(|| fail(format!("the job has no argument `{name}`")))?;
                    }
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if let Some(why) = control_char(&text) {
                        return Err(fail(format!("argument `{name}` {why}")));
                    }
                    out.push_str(&text);
                    from.push(format!("`{name}`"));
                }
            }
        }
        let from = if from.is_empty() {
            String::new()
        } else {
            format!(" (from argument {})", from.join(", "))
        };
        if out.is_empty() {
            return Err(fail(format!("renders to an empty key{from}")));
        }
        if out.len() > MAX_KEY_BYTES {
            return Err(fail(format!(
                "renders to a key of {} bytes, more than {MAX_KEY_BYTES}{from}",
                out.len()
            )));
        }
        if let Some(why) = control_char(&out) {
            return Err(fail(format!("the key {why}")));
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
    fn keys_that_would_break_a_limit_are_refused_naming_the_argument() {
        let cases = [
            (
                "$args[t]",
                json!({"t": ""}),
                "empty key (from argument `t`)",
            ),
            (
                "$args[t]",
                json!({"t": "acme\nbeta"}),
                "`t` holds a control character (U+000A)",
            ),
            (
                "k/$args[t]",
                json!({"t": "a\u{0}b"}),
                "`t` holds a control character (U+0000)",
            ),
            ("$args[t]", json!({"t": "x".repeat(600)}), "600 bytes"),
        ];
        for (t, args, needle) in cases {
            let e = render(t, args).unwrap_err().to_string();
            assert!(e.contains(needle), "{t}: {e:?} should say {needle:?}");
        }
        let e = KeyTemplate::parse("$workspace")
            .unwrap()
            .render("", &json!({}))
            .unwrap_err();
        assert!(e.to_string().contains("empty key"), "{e}");
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
