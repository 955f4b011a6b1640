//! An admitted job as the worker holds it, how it is to run, and how an
//! execution ended: the types that the dispatcher, the runners (commands,
//! handlers, flow drivers) and the acker share. A leaf: it imports none of
//! them, so each can be read and tested on its own.

use std::time::Duration;

use serde_json::Value;
use sluice_shared::entry::Entry;
use sluice_shared::job::{JobKind, Spec, State};
use sluice_shared::Config;

use crate::running::Stop;

#[derive(Debug)]
pub enum Outcome {
    Ok(Value),
    /// This attempt failed: retried while attempts remain.
    Err(String),
    /// The job failed for good: no retry (a handler's `Permanent` error, a
    /// corrupt record).
    Fail(String),
    /// The far side said "not before this many ms from now" (a command's
    /// exit 75, a handler's `Throttle`): the key pauses, the job waits
    /// again, and the attempt does not count.
    Throttle(u64, String),
    Cancelled,
    /// The attempt is no longer ours: nothing is reported.
    Lost,
    /// A flow's driver handed its next steps over and parked the flow.
    Parked,
}

impl Outcome {
    pub fn from_stop(why: Stop) -> Outcome {
        match why {
            Stop::Cancelled => Outcome::Cancelled,
            Stop::Lost => Outcome::Lost,
            Stop::Shutdown => Outcome::Err("the worker shut down before the job finished".into()),
        }
    }
}

/// A job as admit.lua hands it over.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub entry: String,
    pub attempt: u32,
    pub path: String,
    pub workspace: String,
    pub args: Value,
    pub ckey: String,
    /// Whether its end is expected to need its key's own keys (slots:K and
    /// wait:K) declared: a keyed job stamped with a window (or whose spec
    /// cannot tell), whose slot stays held after it ends. A throttled end
    /// declares its key too (dispatch.rs), and so does one whose key the
    /// worker has seen bind (`Acks`).
    pub declare_key: bool,
    pub id: String,
    /// "flow", "step", or "" for a script's job.
    pub kind: JobKind,
    /// For a flow's step: the flow run's id, the flow's path, the step, the
    /// for-each position.
    pub parent: String,
    pub flow: String,
    pub step: String,
    /// Why the job cannot run, when its spec is damaged.
    pub corrupt: Option<String>,
    pub max_attempts: u32,
    /// Redis times (Unix ms): when it became ready, and the start of this
    /// attempt.
    pub ready_at: i64,
    pub started: i64,
}

impl Admitted {
    /// From an admitted entry, its spec as stored (JSON) and its new state.
    pub fn new(entry: String, spec: &str, state: &str) -> Admitted {
        // admit.lua wrote this state a moment ago: a malformed one can only
        // come from a damaged reply, and fails the job below.
        let raw_state = state;
        let parsed_state = State::parse(raw_state);
        let damaged_state = parsed_state.is_none();
        let state = parsed_state.unwrap_or_default();
        let parsed = Entry::parse(&entry);
        let id = parsed.as_ref().and_then(|e| e.id()).unwrap_or_default();
        let ckey = parsed.as_ref().map(|e| e.ckey()).unwrap_or_default();
        let (spec, corrupt) = match serde_json::from_str::<Spec>(spec) {
            Ok(s) if damaged_state => (
                s,
                Some(format!(
                    "corrupt job record: state {raw_state:?} is malformed"
                )),
            ),
            Ok(s) if s.args.is_object() => (s, None),
            Ok(s) => (
                s,
                Some("corrupt job record: args are not a JSON object".to_string()),
            ),
            // Its head (every field before args, as the scripts read it)
            // may still name the flow it is a step of, which must hear of
            // the failure.
            Err(e) => (
                Spec::head_of(spec).unwrap_or_default(),
                Some(format!("corrupt job record: spec is not valid JSON: {e}")),
            ),
        };
        Admitted {
            id: id.to_string(),
            declare_key: !ckey.is_empty() && spec.window_ms != Some(0),
            ckey: ckey.to_string(),
            entry,
            attempt: state.attempt,
            ready_at: state.ready.unwrap_or(spec.created_at),
            started: state.since,
            path: spec.path,
            workspace: spec.workspace,
            args: spec.args,
            // An unknown kind is damage; it runs as a script would.
            kind: JobKind::parse(&spec.kind).unwrap_or(JobKind::Script),
            parent: spec.parent,
            flow: spec.flow,
            step: spec.step,
            max_attempts: spec
                .max_attempts
                .unwrap_or(sluice_shared::job::DEFAULT_MAX_ATTEMPTS),
            corrupt,
        }
    }
}

/// How a job runs: its command (none for a Rust handler), timeout and first
/// retry delay. A flow's inline step has its own; anything else its script's.
pub fn settings<'a>(
    config: &'a Config,
    job: &Admitted,
) -> (Option<&'a Vec<String>>, Duration, u64) {
    let step = (job.kind == JobKind::Step)
        .then(|| config.flows.get(&job.flow))
        .flatten()
        .and_then(|f| f.steps.iter().find(|s| s.id == job.step))
        .filter(|s| s.command.is_some());
    if let Some(s) = step {
        return (
            s.command.as_ref(),
            Duration::from_secs_f64(s.timeout_s),
            (s.backoff_s * 1000.0) as u64,
        );
    }
    match config.scripts.get(&job.path) {
        Some(s) => (
            s.command.as_ref(),
            Duration::from_secs_f64(s.timeout_s),
            (s.backoff_s * 1000.0) as u64,
        ),
        None => (None, Duration::from_secs(300), 1000),
    }
}

/// A Retry-After as whole ms, at most the longest duration a setting takes.
pub fn throttle_ms(d: Duration) -> u64 {
    // At least 1 ms: "retry after 0" still pauses, for as short as can be.
    (d.as_millis() as u64).clamp(1, (sluice_shared::config::MAX_SECONDS * 1000.0) as u64)
}
