//! Passing data between a flow's steps. A step's `args` is a JSON template:
//! any string that is exactly a reference is replaced by what it names, and
//! `for_each` is one reference, to an array.
//!
//! | reference | names |
//! | --- | --- |
//! | `$flow_input` | the flow run's args |
//! | `$results.<step>` | an earlier step's result (a for-each step's: the array of its iterations' results) |
//! | `$previous_result` | the result of the step just before |
//! | `$item`, `$index` | in a for-each step: the element and its position |
//!
//! Each may go on with `.name` or `.0` to reach into objects and arrays:
//! `$flow_input.accounts`, `$results.fetch.items.0.id`.

use serde_json::Value;

/// What references resolve against, for one step.
pub struct Scope<'a> {
    /// The flow run's args: `$flow_input`.
    pub flow_input: &'a Value,
    /// Results of earlier steps, by step id.
    pub result: &'a (dyn Fn(&str) -> Option<Value> + Sync),
    /// The id of the step just before, for `$previous_result`; `None` for the first step.
    pub previous_step: Option<&'a str>,
    /// In a for-each iteration: its element and position, for `$item` and `$index`.
    pub item: Option<(&'a Value, usize)>,
}

/// A reference's root and path, from a string like `$results.fetch.items`.
pub fn parse(text: &str) -> Option<(Root, Vec<String>)> {
    let rest = text.strip_prefix('$')?;
    let mut parts = rest.split('.');
    let root = match parts.next()? {
        "flow_input" => Root::FlowInput,
        "results" => Root::Result(parts.next().filter(|s| !s.is_empty())?.to_string()),
        "previous_result" => Root::Previous,
        "item" => Root::Item,
        "index" => Root::Index,
        _ => return None,
    };
    let path: Vec<String> = parts.map(str::to_string).collect();
    if path.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some((root, path))
}

/// What a reference starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    /// `$flow_input`: the flow run's args.
    FlowInput,
    /// `$results.<step>`: that earlier step's result.
    Result(String),
    /// `$previous_result`: the result of the step just before.
    Previous,
    /// `$item`: the for-each element.
    Item,
    /// `$index`: the for-each element's position.
    Index,
}

/// Resolves one reference; the error names it.
pub fn resolve(text: &str, scope: &Scope) -> Result<Value, String> {
    let missing = || format!("reference {text} names nothing");
    let (root, path) = parse(text).ok_or_else(|| format!("{text} is not a reference"))?;
    let mut v = match root {
        Root::FlowInput => scope.flow_input.clone(),
        Root::Result(step) => (scope.result)(&step).ok_or_else(missing)?,
        Root::Previous => scope
            .previous_step
            .and_then(|s| (scope.result)(s))
            .ok_or_else(missing)?,
        Root::Item => scope.item.map(|(v, _)| v.clone()).ok_or_else(missing)?,
        Root::Index => scope
            .item
            .map(|(_, i)| Value::from(i))
            .ok_or_else(missing)?,
    };
    for p in &path {
        v = match v {
            Value::Object(mut m) => m.remove(p).ok_or_else(missing)?,
            Value::Array(mut a) => {
                let i: usize = p.parse().map_err(|_| missing())?;
                if i >= a.len() {
                    return Err(missing());
                }
                a.swap_remove(i)
            }
            _ => return Err(missing()),
        };
    }
    Ok(v)
}

/// Fills an args template: strings that are references are replaced.
pub fn fill(template: &Value, scope: &Scope) -> Result<Value, String> {
    Ok(match template {
        Value::String(s) if s.starts_with('$') && parse(s).is_some() => resolve(s, scope)?,
        Value::Array(a) => {
            Value::Array(a.iter().map(|v| fill(v, scope)).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), fill(v, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Every reference in a template, for checking at config load.
pub fn references(template: &Value, out: &mut Vec<String>) {
    match template {
        Value::String(s) if s.starts_with('$') => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| references(v, out)),
        Value::Object(m) => m.values().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_references_and_names_the_missing_one() {
        let input = json!({"account": "a-1", "list": [{"id": 7}]});
        let results = |s: &str| (s == "fetch").then(|| json!({"items": [1, 2]}));
        let item = json!({"x": 1});
        let scope = Scope {
            flow_input: &input,
            result: &results,
            previous_step: Some("fetch"),
            item: Some((&item, 3)),
        };
        let t = json!({"a": "$flow_input.account", "b": "$results.fetch.items.1", "c": "$previous_result",
                       "d": ["$item.x", "$index", "plain", "$5"], "e": "$flow_input.list.0.id"});
        assert_eq!(
            fill(&t, &scope).unwrap(),
            json!({"a": "a-1", "b": 2, "c": {"items": [1, 2]}, "d": [1, 3, "plain", "$5"], "e": 7})
        );
        let e = fill(&json!({"x": "$results.nope"}), &scope).unwrap_err();
        assert!(e.contains("$results.nope"), "{e}");
        let e = fill(&json!("$flow_input.missing"), &scope).unwrap_err();
        assert!(e.contains("$flow_input.missing"), "{e}");
        assert!(
            parse("$results").is_none()
                && parse("$other").is_none()
                && parse("$flow_input..a").is_none()
        );
    }
}
