//! The codec of a job's state, as stored in `{p}:state` (see keys.rs):
//! `<status> <attempt> <since>[ <word>...]`. The Lua scripts read it with
//! `parse_state` and write it with `set_state` (records.lua); this parser
//! accepts exactly what that pattern accepts, `^(%a+) (%d+) (%d+)(.*)$` with
//! words split on white space, so that the two sides never disagree about a
//! state, however damaged. tests/codecs.rs runs both on each other's output.

/// Most digits an attempt and a time may have: beyond them Lua's numbers and
/// Rust's would part ways.
const MAX_ATTEMPT_DIGITS: usize = 9;
const MAX_TIME_DIGITS: usize = 16;

/// A job's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// The status's name (see [`crate::job::Status`]).
    pub status: String,
    /// Attempts started.
    pub attempt: u32,
    /// When it entered this status (for scheduled: when it falls due), Unix ms.
    pub since: i64,
    /// When a finished job's last attempt started.
    pub started: Option<i64>,
    /// When a waiting, running or finished job became ready, if not at its
    /// creation.
    pub ready: Option<i64>,
    /// For a flow run: `active` while its driver runs, `parked` until a step
    /// ends, `queued` to drive again.
    pub drive: Option<String>,
    /// Attempts that ended in a Retry-After: not counted toward max_attempts.
    pub throttled: Option<i64>,
    /// A cancel was requested while the job runs: its worker stops it.
    pub cancel: bool,
    /// A step of the flow run ended while its driver was running: it drives again.
    pub dirty: bool,
}

/// Lua's `%s`: the characters words are split on.
fn lua_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The leading run of bytes that `keep` accepts, and the rest.
fn leading(s: &str, keep: impl Fn(u8) -> bool) -> (&str, &str) {
    let n = s.bytes().take_while(|&b| keep(b)).count();
    s.split_at(n)
}

impl State {
    /// Reads a state; `None` when it is malformed, exactly where Lua's
    /// `parse_state` returns nil.
    pub fn parse(s: &str) -> Option<State> {
        let (status, rest) = leading(s, |b| b.is_ascii_alphabetic());
        let rest = rest.strip_prefix(' ').filter(|_| !status.is_empty())?;
        let (attempt, rest) = leading(rest, |b| b.is_ascii_digit());
        let rest = rest.strip_prefix(' ')?;
        let (since, rest) = leading(rest, |b| b.is_ascii_digit());
        if attempt.is_empty()
            || since.is_empty()
            || attempt.len() > MAX_ATTEMPT_DIGITS
            || since.len() > MAX_TIME_DIGITS
        {
            return None;
        }
        let mut st = State {
            status: status.to_string(),
            attempt: attempt.parse().ok()?,
            since: since.parse().ok()?,
            ..State::default()
        };
        for w in rest.split(lua_space).filter(|w| !w.is_empty()) {
            let (key, value) = leading(w, |b| b.is_ascii_alphabetic() || b == b'_');
            // Only the known words, each in its one form, as Lua reads them.
            let time = |v: &str| {
                (!v.is_empty()
                    && v.len() <= MAX_TIME_DIGITS
                    && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse().ok())
                .flatten()
            };
            match (key, value.strip_prefix('=')) {
                ("started", Some(v)) => st.started = time(v).or(st.started),
                ("ready", Some(v)) => st.ready = time(v).or(st.ready),
                ("drive", Some(v)) => st.drive = Some(v.to_string()),
                ("throttled", Some(v)) => st.throttled = time(v).or(st.throttled),
                _ if w == "cancel" => st.cancel = true,
                _ if w == "dirty" => st.dirty = true,
                _ => {}
            }
        }
        Some(st)
    }

    /// Writes a state as `set_state` in records.lua does, words in the same
    /// order (ready, started, drive, throttled, cancel, dirty).
    pub fn format(&self) -> String {
        let mut s = format!("{} {} {}", self.status, self.attempt, self.since);
        if let Some(r) = self.ready {
            s += &format!(" ready={r}");
        }
        if let Some(t) = self.started {
            s += &format!(" started={t}");
        }
        if let Some(d) = &self.drive {
            s += &format!(" drive={d}");
        }
        if let Some(n) = self.throttled {
            s += &format!(" throttled={n}");
        }
        if self.cancel {
            s += " cancel";
        }
        if self.dirty {
            s += " dirty";
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_refuses_what_lua_refuses() {
        let st = State {
            status: "running".into(),
            attempt: 2,
            since: 1_700_000_000_000,
            ready: Some(5),
            drive: Some("parked".into()),
            cancel: true,
            ..State::default()
        };
        assert_eq!(State::parse(&st.format()), Some(st));
        for bad in [
            "",
            "running",
            "running 1",
            "running x 5",
            "run-ning 1 5",
            " running 1 5",
            "running 1234567890 5",
        ] {
            assert_eq!(State::parse(bad), None, "{bad:?}");
        }
        // Lua's pattern takes the digits and leaves the rest as words.
        let st = State::parse("queued 0 12abc\tcancel").unwrap();
        assert_eq!((st.since, st.cancel), (12, true));
    }
}
