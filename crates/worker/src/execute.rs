//! Runs one admitted job to its outcome: a registered handler or the
//! configured command, under the script's timeout, stoppable at any time.
//! Nothing a job does (bad args, a panic) can take the worker down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice_shared::Config;
use tokio::sync::watch;
use tracing::Instrument;

use crate::command;
use crate::handler::{Handler, JobContext};
use crate::running::Stop;

#[derive(Debug)]
pub enum Outcome {
    Ok(Value),
    Err(String),
    Cancelled,
    /// The attempt is no longer ours: nothing is reported.
    Lost,
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
    pub args: String,
    pub ckey: String,
    pub id: String,
}

pub async fn execute(
    config: &Config,
    handlers: &HashMap<String, Arc<dyn Handler>>,
    job: &Admitted,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Outcome {
    let span = tracing::info_span!("job", id = %job.id, path = %job.path, key = %job.ckey, attempt = job.attempt);
    async {
        let args: Value = match serde_json::from_str(&job.args) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Outcome::Err("corrupt job record: args are not a JSON object".into()),
            Err(e) => return Outcome::Err(format!("corrupt job record: args are not JSON: {e}")),
        };
        let ctx = JobContext {
            id: job.id.clone(),
            path: job.path.clone(),
            workspace: job.workspace.clone(),
            args,
            attempt: job.attempt,
            concurrency_key: (!job.ckey.is_empty()).then(|| job.ckey.clone()),
        };
        let script = config.scripts.get(&job.path);
        let timeout = Duration::from_secs_f64(script.map(|s| s.timeout_s).unwrap_or(300.0));
        let outcome = if let Some(h) = handlers.get(&job.path) {
            let task = tokio::spawn(h.call(ctx));
            let abort = task.abort_handle();
            tokio::select! {
                r = task => match r {
                    Ok(Ok(v)) => Outcome::Ok(v),
                    Ok(Err(reason)) => Outcome::Err(reason),
                    Err(e) if e.is_panic() => Outcome::Err(format!("handler panicked: {}", panic_text(e.into_panic()))),
                    Err(e) => Outcome::Err(format!("handler task failed: {e}")),
                },
                _ = tokio::time::sleep(timeout) => {
                    abort.abort();
                    Outcome::Err(format!("timed out after {} s", timeout.as_secs_f64()))
                }
                why = command::stopped(&mut stop) => {
                    abort.abort();
                    Outcome::from_stop(why)
                }
            }
        } else if let Some(argv) = script.and_then(|s| s.command.as_ref()) {
            command::run(argv, &ctx, timeout, &mut stop).await
        } else {
            Outcome::Err(format!(
                "no handler is registered and no command is configured for path {:?} on this worker",
                job.path
            ))
        };
        match &outcome {
            Outcome::Ok(_) => tracing::debug!("succeeded"),
            Outcome::Err(e) => tracing::warn!(error = %e, "failed"),
            Outcome::Cancelled => tracing::info!("cancelled"),
            Outcome::Lost => tracing::warn!("lease lost: attempt stopped, result not reported"),
        }
        outcome
    }
    .instrument(span)
    .await
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
