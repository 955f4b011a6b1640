//! Times for people: a Unix-ms timestamp as a UTC date with its age
//! ("2026-11-29 15:56:41 UTC, 3 s ago"). `--json` output keeps Unix ms.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix ms, by this machine's clock (only used to word ages).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `ms` as a UTC date and time, with its distance from `now`.
pub fn date_and_age(ms: i64, now: i64) -> String {
    format!("{} ({})", date(ms), age(now - ms))
}

/// A UTC date and time to the second.
pub fn date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A signed distance in ms, worded: "3 s ago", "in 2 min".
pub fn age(delta_ms: i64) -> String {
    let span = duration(delta_ms.unsigned_abs());
    if delta_ms >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A length of time in the largest unit that keeps it readable.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min", ms / 60_000),
        3_600_000..=86_399_999 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        _ => format!("{:.1} d", ms as f64 / 86_400_000.0),
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar, counting in 400-year eras of 146,097 days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ages_read_as_people_write_them() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(date(1_796_000_000_123), "2026-11-30 00:53:20 UTC");
        assert_eq!(age(3_200), "3.2 s ago");
        assert_eq!(age(-120_000), "in 2 min");
        assert_eq!(duration(250), "250 ms");
        assert_eq!(duration(2 * 86_400_000), "2.0 d");
    }
}
