//! Rust handlers: what a handler gets (`JobContext`) and returns.
//!
//! A handler is any `Fn(JobContext) -> impl Future<Output = Result<T, E>>`
//! with `T: Serialize` (the job's result) and `E` convertible into a boxed
//! error (its failure), so `?` works on any error type. Two error types say
//! more than "this attempt failed": [`Permanent`] fails the job at once,
//! without retries.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

/// Any error a handler fails with.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// What a handler may return: a result to serialize, or an error.
pub type HandlerResult<T = Value> = Result<T, BoxError>;

/// An error that fails the job at once: no retry, whatever `max_attempts`
/// allows (args that can never fit, a request the far side refuses for
/// good). Return it with `?` or `Err(Permanent::new(...).into())`.
#[derive(Debug)]
pub struct Permanent(pub BoxError);

impl Permanent {
    /// Makes an error, or a message, permanent.
    pub fn new(e: impl Into<BoxError>) -> Permanent {
        Permanent(e.into())
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for Permanent {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// The far side asked for a pause ("429, Retry-After: 30"): the job's key
/// pauses for `retry_after` (no job of it is admitted before then; running
/// ones go on), the job waits again at the head of its key, and this
/// attempt does not count toward `max_attempts`. Return it with
/// `Err(Throttle::after(d).into())`.
#[derive(Debug)]
pub struct Throttle {
    /// How long the key pauses, from the moment the attempt is recorded.
    pub retry_after: std::time::Duration,
}

impl Throttle {
    /// A throttle for `retry_after`.
    pub fn after(retry_after: std::time::Duration) -> Throttle {
        Throttle { retry_after }
    }
}

impl fmt::Display for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "throttled: retry after {} s",
            self.retry_after.as_secs_f64()
        )
    }
}

impl Error for Throttle {}

/// Why a handler is asked to stop before it has finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `sluice cancel` (or the run it is a step of was cancelled).
    Cancelled,
    /// The script's `timeout_s` ran out.
    TimedOut,
    /// The worker is shutting down and its `grace_s` is over.
    Shutdown,
    /// The worker may have lost the job's lease: another worker may run it.
    /// The handler is dropped at once, with no grace.
    LeaseLost,
}

/// How long a handler has, once its [`JobContext::stopped`] has fired, to
/// finish before its future is dropped (not for a lost lease: then at once).
pub const HANDLER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// One execution, as a handler sees it.
#[derive(Clone, Debug)]
pub struct JobContext {
    /// The job's id, the same for every attempt: key side effects by it.
    pub id: sluice_shared::JobId,
    /// The path being run.
    pub path: String,
    /// The job's workspace: a tenant's name.
    pub workspace: String,
    /// The job's args, a JSON object; [`JobContext::args_as`] reads them
    /// into a type of the handler's own.
    pub args: Value,
    /// This attempt, from 1.
    pub attempt: u32,
    /// Attempts the job gets in all.
    pub max_attempts: u32,
    /// The job's resolved concurrency key, if its path has a limit.
    pub concurrency_key: Option<String>,
    /// When the script's `timeout_s` runs out for this attempt.
    pub deadline: tokio::time::Instant,
    pub(crate) stop: watch::Receiver<Option<StopReason>>,
}

impl JobContext {
    /// The args as the handler's own type. When they do not fit, the error
    /// is [`Permanent`] (the same args never will), naming the type and
    /// what did not fit; `?` fails the job with it, without retries.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T, Permanent> {
        T::deserialize(&self.args).map_err(|e| {
            Permanent::new(format!(
                "args do not fit {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Resolves when the attempt is asked to stop (cancel, timeout, drain,
    /// lost lease), with the reason. The handler then has
    /// [`HANDLER_GRACE`] to clean up and return; its result is not used.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.stop.clone();
        loop {
            if let Some(why) = *rx.borrow_and_update() {
                return why;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Whether the attempt has been asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.borrow().is_some()
    }
}

/// The future a handler call is.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, BoxError>> + Send>>;

/// An async handler for a path; see the module's documentation for which
/// functions are handlers.
pub trait Handler: Send + Sync {
    /// Runs the handler for one execution: a future of the job's result as
    /// JSON, or of its error.
    fn call(&self, ctx: JobContext) -> HandlerFuture;
}

impl<F, Fut, T, E> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize,
    E: Into<BoxError>,
{
    fn call(&self, ctx: JobContext) -> HandlerFuture {
        let fut = self(ctx);
        Box::pin(async move {
            let value = fut.await.map_err(Into::into)?;
            serde_json::to_value(value).map_err(|e| {
                Permanent::new(format!("the handler's result is not JSON: {e}")).into()
            })
        })
    }
}
