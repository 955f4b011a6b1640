//! Reading Redis's own counters: INFO fields and commandstats.

use std::collections::BTreeMap;

pub fn info_field(info: &str, name: &str) -> Option<f64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

pub fn info_text(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Calls per command since the last CONFIG RESETSTAT (commands run inside
/// Lua count too).
pub fn command_calls(con: &mut redis::Connection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Commands the benchmark's own measuring sends, not counted as job work.
const MEASURING: &[&str] = &[
    "info",
    "config|resetstat",
    "config",
    "hget",
    "ping",
    "client|setinfo",
    "client",
    "dbsize",
    "llen",
    "time",
];

pub fn work_commands(calls: &BTreeMap<String, u64>, driver_llen: u64, driver_time: u64) -> u64 {
    calls
        .iter()
        .map(|(name, n)| match name.as_str() {
            // The driver's LLEN/TIME polls are subtracted; the scripts' own stay.
            "llen" => n.saturating_sub(driver_llen),
            "time" => n.saturating_sub(driver_time),
            other if MEASURING.contains(&other) => 0,
            _ => *n,
        })
        .sum()
}

pub fn script_calls(calls: &BTreeMap<String, u64>) -> u64 {
    calls.get("evalsha").copied().unwrap_or(0) + calls.get("eval").copied().unwrap_or(0)
}

pub fn reset(con: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(con)
        .expect("CONFIG RESETSTAT");
}
