//! Runs one admitted job to its outcome: a registered handler or the
//! configured command, under the script's timeout, stoppable at any time.
//! Nothing a job does (bad args, a panic) can take the worker down.

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use sluice_shared::entry::Entry;
use sluice_shared::job::{Spec, State};
use sluice_shared::Config;
use tracing::Instrument;

use crate::command;
use crate::handler::{Handler, JobContext, Permanent, StopReason, HANDLER_GRACE};
use crate::running::Stop;
use tokio::sync::watch;

#[derive(Debug)]
pub enum Outcome {
    Ok(Value),
    /// This attempt failed: retried while attempts remain.
    Err(String),
    /// The job failed for good: no retry (a handler's `Permanent` error, a
    /// corrupt record).
    Fail(String),
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
    pub id: String,
    /// "flow", "step", or "" for a script's job.
    pub kind: String,
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
            ckey: ckey.to_string(),
            entry,
            attempt: state.attempt,
            ready_at: state.ready.unwrap_or(spec.created_at),
            started: state.since,
            path: spec.path,
            workspace: spec.workspace,
            args: spec.args,
            kind: spec.kind,
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
    let step = (job.kind == "step")
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

pub async fn execute(
    shared: &crate::dispatch::Shared,
    job: &Admitted,
    started: crate::running::Started,
) -> Outcome {
    let (mut stop, deadline) = (started.stop, started.deadline);
    let (config, handlers) = (&*shared.config, &*shared.handlers);
    let span = tracing::info_span!("job", id = %job.id, path = %job.path, key = %job.ckey, attempt = job.attempt);
    async {
        // A damaged record will not mend itself: no retry.
        if let Some(reason) = &job.corrupt {
            return Outcome::Fail(reason.clone());
        }
        let (command, timeout, _) = settings(config, job);
        let (signal, signalled) = watch::channel(None);
        let ctx = JobContext {
            id: job.id.clone(),
            path: job.path.clone(),
            workspace: job.workspace.clone(),
            args: job.args.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            concurrency_key: (!job.ckey.is_empty()).then(|| job.ckey.clone()),
            deadline: tokio::time::Instant::now() + timeout,
            stop: signalled,
        };
        let inline_step = job.kind == "step" && job.path == job.flow;
        // The flow and command branches are boxed: their futures are large,
        // and every job's task would otherwise be as large as they are.
        let outcome = if job.kind == "flow" {
            Box::pin(crate::flow::drive(&shared.pool, &shared.keys, config, job)).await
        } else if let Some(h) = handlers.get(&job.path).filter(|_| !inline_step) {
            Box::pin(run_handler(&**h, ctx, timeout, &mut stop, signal)).await
        } else if let Some(argv) = command {
            Box::pin(command::run(argv, &ctx, timeout, &mut stop, deadline)).await
        } else {
            Outcome::Err(format!(
                "no handler is registered and no command is configured for path {:?} on this worker",
                job.path
            ))
        };
        match &outcome {
            Outcome::Ok(_) => tracing::debug!("succeeded"),
            Outcome::Err(e) => tracing::warn!(error = %e, "failed"),
            Outcome::Fail(e) => tracing::warn!(error = %e, "failed for good: no retry"),
            Outcome::Cancelled => tracing::info!("cancelled"),
            Outcome::Lost => tracing::warn!("lease lost: attempt stopped, result not reported"),
            Outcome::Parked => tracing::debug!("flow parked until its next step ends"),
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Runs a handler to its outcome. A stop (cancel, timeout, drain) first
/// fires the handler's `JobContext::stopped` and gives it HANDLER_GRACE to
/// return before its future is dropped; a lost lease drops it at once.
async fn run_handler(
    h: &dyn Handler,
    ctx: JobContext,
    timeout: Duration,
    stop: &mut watch::Receiver<Option<Stop>>,
    signal: watch::Sender<Option<StopReason>>,
) -> Outcome {
    // A panic is caught where the handler runs: no task of its own.
    let mut call = std::pin::pin!(std::panic::AssertUnwindSafe(h.call(ctx)).catch_unwind());
    let why = tokio::select! {
        r = &mut call => return handler_outcome(r),
        _ = tokio::time::sleep(timeout) => StopReason::TimedOut,
        why = command::stopped(stop) => match why {
            Stop::Cancelled => StopReason::Cancelled,
            Stop::Shutdown => StopReason::Shutdown,
            Stop::Lost => StopReason::LeaseLost,
        },
    };
    signal.send_replace(Some(why));
    if why != StopReason::LeaseLost {
        // The grace, cut short if the lease is lost meanwhile: fencing
        // comes before courtesy.
        let lost = async {
            loop {
                if *stop.borrow_and_update() == Some(Stop::Lost) {
                    return;
                }
                if stop.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(HANDLER_GRACE, &mut call) => {}
            _ = lost => {
                signal.send_replace(Some(StopReason::LeaseLost));
                return Outcome::Lost;
            }
        }
    }
    match why {
        StopReason::TimedOut => {
            Outcome::Err(format!("timed out after {} s", timeout.as_secs_f64()))
        }
        StopReason::Cancelled => Outcome::Cancelled,
        StopReason::Shutdown => Outcome::from_stop(Stop::Shutdown),
        StopReason::LeaseLost => Outcome::Lost,
    }
}

/// A finished handler call as an outcome: its error may say "no retry".
fn handler_outcome(
    r: Result<Result<Value, crate::handler::BoxError>, Box<dyn std::any::Any + Send>>,
) -> Outcome {
    match r {
        Ok(Ok(v)) => Outcome::Ok(v),
        Ok(Err(e)) if e.downcast_ref::<Permanent>().is_some() => Outcome::Fail(e.to_string()),
        Ok(Err(e)) => Outcome::Err(e.to_string()),
        Err(panic) => Outcome::Err(format!("handler panicked: {}", panic_text(panic))),
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
