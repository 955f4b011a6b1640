//! Runs one admitted job to its outcome: a registered handler or the
//! configured command, under the script's timeout, stoppable at any time.
//! Nothing a job does (bad args, a panic) can take the worker down.

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use sluice_shared::JobKind;
use tracing::Instrument;

use crate::admitted::{settings, throttle_ms, Admitted, Outcome};
use crate::command;
use crate::context::Shared;
use crate::handler::{Handler, JobContext, Permanent, StopReason, Throttle, HANDLER_GRACE};
use crate::running::Stop;
use tokio::sync::watch;

pub async fn execute(shared: &Shared, job: &Admitted, started: crate::running::Started) -> Outcome {
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
            id: sluice_shared::JobId::from_stored(job.id.clone()),
            path: job.path.clone(),
            workspace: job.workspace.clone(),
            args: job.args.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            concurrency_key: (!job.ckey.is_empty()).then(|| job.ckey.clone()),
            deadline: tokio::time::Instant::now() + timeout,
            stop: signalled,
        };
        let inline_step = job.kind == JobKind::Step && job.path == job.flow;
        // The flow and command branches are boxed: their futures are large,
        // and every job's task would otherwise be as large as they are.
        let outcome = if job.kind == JobKind::Flow {
            Box::pin(crate::flow::drive(&shared.pool, &shared.keys, &shared.parts, config, job)).await
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
            Outcome::Throttle(ms, _) => tracing::info!(retry_after_ms = ms, "throttled: the key pauses, the job waits again"),
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
        Ok(Err(e)) => match e.downcast_ref::<Throttle>() {
            Some(t) => Outcome::Throttle(throttle_ms(t.retry_after), e.to_string()),
            None => Outcome::Err(e.to_string()),
        },
        Err(panic) => Outcome::Err(format!("handler panicked: {}", panic_text(panic))),
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
