//! The readable table and the JSON file of one scenario.

use std::path::Path;

use serde_json::{Map, Value};

pub fn emit(out_dir: &Path, scenario: &str, figures: Map<String, Value>) -> std::io::Result<()> {
    println!("\n{scenario}");
    println!("{}", "-".repeat(scenario.len()));
    for (k, v) in &figures {
        let shown = match v {
            Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(0.0)),
            other => other.to_string(),
        };
        println!("  {k:<28} {shown}");
    }
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join(format!("{scenario}.json"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&Value::Object(figures))? + "\n",
    )?;
    println!("  (written to {})", path.display());
    Ok(())
}
