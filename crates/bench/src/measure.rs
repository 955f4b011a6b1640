//! Exactness from the jobs' own recorded times (Redis time, ms).

/// One execution: admitted at `start`, ended at `end`, its slot held until
/// `end + window`.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub start: i64,
    pub end: i64,
    pub window: i64,
}

/// The most slots held at any instant: slots are [start, end + window).
pub fn max_slots_held(spans: &[Span]) -> usize {
    let mut events: Vec<(i64, i32)> = Vec::with_capacity(spans.len() * 2);
    for s in spans {
        events.push((s.start, 1));
        events.push((s.end + s.window, -1));
    }
    // At equal times a slot frees before the next is taken.
    events.sort_by_key(|&(t, d)| (t, d));
    let (mut held, mut most) = (0i32, 0i32);
    for (_, d) in events {
        held += d;
        most = most.max(held);
    }
    most as usize
}

/// How long after its slot opened each job beyond the first `max` was
/// admitted: the k-th admission takes the (k - max)-th slot to free.
pub fn lateness_ms(spans: &[Span], max: usize) -> Vec<i64> {
    let mut starts: Vec<i64> = spans.iter().map(|s| s.start).collect();
    let mut frees: Vec<i64> = spans.iter().map(|s| s.end + s.window).collect();
    starts.sort_unstable();
    frees.sort_unstable();
    (max..starts.len())
        .map(|k| starts[k] - frees[k - max])
        .collect()
}

pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_overlap_and_lateness() {
        let s = |start, end| Span {
            start,
            end,
            window: 100,
        };
        let spans = [s(0, 10), s(0, 20), s(110, 120), s(125, 130)];
        assert_eq!(max_slots_held(&spans), 2);
        // Third took the slot freed at 110 (0 late), fourth the one freed at 120 (5 late).
        assert_eq!(lateness_ms(&spans, 2), vec![0, 5]);
        assert_eq!(max_slots_held(&[s(0, 10), s(50, 60), s(115, 116)]), 2);
    }
}
