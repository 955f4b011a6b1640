//! A key's slots over the last minutes, as an SVG drawn on the server: a
//! row per recent execution, its running time, then the window its slot
//! stays held; slots reserved for waiters up to the moment they run; and
//! the key's pause. At most `max` bars overlap at any moment: the picture
//! of the limit at work.

use maud::{html, Markup};

use crate::{KeyDetail, Slot};

/// How far back the chart looks at most, and at least; at most how far ahead.
const PAST_MS: i64 = 5 * 60_000;
const MIN_PAST_MS: i64 = 20_000;
const AHEAD_MS: i64 = 60_000;
/// Grid steps to choose from: the smallest that keeps at most 8 lines.
const STEPS_MS: [i64; 8] = [1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000];
const WIDTH: f64 = 900.0;
const LABEL: f64 = 70.0;
const ROW: f64 = 11.0;

struct Bar {
    row: usize,
    from: i64,
    to: i64,
    class: &'static str,
    title: String,
}

pub(crate) fn svg(d: &KeyDetail, now: i64) -> Markup {
    // From a little before the earliest execution shown, within bounds.
    let earliest = d
        .recent
        .iter()
        .filter_map(|j| j.started_at)
        .filter(|&s| s >= now - PAST_MS)
        .min()
        .unwrap_or(now);
    let start = (earliest - (now - earliest) / 10).clamp(now - PAST_MS, now - MIN_PAST_MS);
    // Oldest first, so the chart reads left to right, top to bottom.
    let mut jobs: Vec<_> = d.recent.iter().filter(|j| j.started_at.is_some()).collect();
    jobs.sort_by_key(|j| j.started_at);
    let mut bars = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut end = now;
    for j in &jobs {
        let (Some(s), ended) = (j.started_at, j.ended_at) else {
            continue;
        };
        let stop = ended.unwrap_or(now);
        let tail = ended.map(|e| e + j.window_ms.unwrap_or(0) as i64);
        if tail.unwrap_or(stop) < start {
            continue;
        }
        let row = rows.len();
        rows.push(j.id.to_string());
        bars.push(Bar {
            row,
            from: s,
            to: stop,
            class: "running",
            title: format!("{} running", j.id),
        });
        if let (Some(e), Some(t)) = (ended, tail) {
            if t > e {
                end = end.max(t);
                bars.push(Bar {
                    row,
                    from: e,
                    to: t,
                    class: "window",
                    title: format!("{} in its window", j.id),
                });
            }
        }
    }
    for s in &d.slots {
        if let Slot::Reserved { id, due: Some(due) } = s {
            let row = rows.iter().position(|r| r == id).unwrap_or_else(|| {
                rows.push(id.clone());
                rows.len() - 1
            });
            end = end.max(*due);
            bars.push(Bar {
                row,
                from: now,
                to: *due,
                class: "reserved",
                title: format!("{id} reserved until it runs"),
            });
        }
    }
    let end = end.min(now + AHEAD_MS).max(now + 1_000);
    let span = (end - start) as f64;
    let x = |t: i64| LABEL + (WIDTH - LABEL) * ((t.clamp(start, end) - start) as f64 / span);
    let height = 24.0 + ROW * rows.len().max(1) as f64;
    let step = STEPS_MS
        .iter()
        .copied()
        .find(|st| (end - start) / st <= 8)
        .unwrap_or(300_000);
    let ticks: Vec<i64> = (-(now - start) / step..=(end - now) / step)
        .map(|k| now + k * step)
        .collect();
    let label = |t: i64| {
        let d = t - now;
        match d {
            0 => "now".to_string(),
            _ if step >= 60_000 => format!("{:+} min", d / 60_000),
            _ => format!("{:+} s", d / 1000),
        }
    };
    let pause = d.slots.iter().find_map(|s| match s {
        Slot::Paused { until } => Some(*until),
        _ => None,
    });
    html! {
        svg.timeline viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label="slots of this key over the last minutes" {
            @for t in &ticks {
                line.grid x1=(x(*t)) x2=(x(*t)) y1="14" y2=(height) {}
                text x=(x(*t) + 2.0) y="10" { (label(*t)) }
            }
            @if let Some(p) = pause {
                rect.paused x=(x(now)) y="14" width=(x(p) - x(now)) height=(height - 14.0) { title { "paused" } }
            }
            @for (i, id) in rows.iter().enumerate() {
                text x="2" y=(24.0 + ROW * i as f64 - 2.0) { "…" (id.get(id.len().saturating_sub(8)..).unwrap_or(id)) }
            }
            @for b in &bars {
                rect class=(b.class) x=(x(b.from)) y=(16.0 + ROW * b.row as f64) width=((x(b.to) - x(b.from)).max(1.5)) height=(ROW - 2.0) {
                    title { (b.title) }
                }
            }
            line.now x1=(x(now)) x2=(x(now)) y1="14" y2=(height) {}
        }
        p.legend {
            span { i style="background:#2b6cb0" {} "running" }
            span { i style="background:#a9c1f5" {} "in window" }
            span { i style="background:#b7791f" {} "reserved for a waiter" }
            span { i style="background:#fbd38d" {} "paused" }
        }
    }
}
