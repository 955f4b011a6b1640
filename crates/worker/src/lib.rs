//! The Sluice worker: claims jobs from Redis, admits them under their global
//! concurrency limits, and runs them as command scripts or as async Rust
//! handlers registered for their paths.
//!
//! ```no_run
//! # async fn demo(config: sluice_shared::Config) -> sluice_shared::Result<()> {
//! use sluice_worker::{JobContext, Worker};
//! Worker::new(config)
//!     .handler("f/hello", |ctx: JobContext| async move {
//!         Ok::<_, sluice_worker::BoxError>(serde_json::json!({ "hello": ctx.args["name"] }))
//!     })
//!     .run_until(async { tokio::signal::ctrl_c().await.ok(); })
//!     .await
//! # }
//! ```

mod ack;
mod admitted;
mod backoff;
mod command;
mod context;
mod dispatch;
mod execute;
mod fence;
mod flow;
mod handler;
mod lease;
mod metrics;
mod retention;
mod routing;
mod running;
mod supervise;
mod wake;

pub use handler::{
    BoxError, Handler, HandlerResult, JobContext, Permanent, StopReason, Throttle, HANDLER_GRACE,
};
pub use metrics::MetricsExport;
pub use sluice_shared::{Config, Error, Result};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// A worker process's job loop, with its registered handlers.
pub struct Worker {
    config: Config,
    handlers: HashMap<String, Arc<dyn Handler>>,
    /// Paths registered that the config does not know: run_until refuses.
    unknown: Vec<String>,
    /// Where its metrics go (with `[worker] metrics_addr`).
    metrics: MetricsExport,
}

impl Worker {
    /// A worker for a loaded config, with no handlers yet.
    pub fn new(config: Config) -> Self {
        Worker {
            config,
            handlers: HashMap::new(),
            unknown: Vec::new(),
            metrics: MetricsExport::default(),
        }
    }

    /// Where the worker's metrics go when `[worker] metrics_addr` is set: by
    /// default it installs a Prometheus recorder and serves `/metrics`; a
    /// service with its own recorder passes its Prometheus handle, or
    /// [`MetricsExport::Elsewhere`] to export them itself. `/healthz` is
    /// served either way.
    pub fn metrics(mut self, export: MetricsExport) -> Self {
        self.metrics = export;
        self
    }

    /// Registers an async Rust handler for a path. The path must also be in the
    /// config's `[scripts]` (its limit, timeout and retries live there), or
    /// `run_until` refuses to start, naming it; a handler takes precedence
    /// over a `command` for the same path.
    pub fn handler<H: Handler + 'static>(mut self, path: impl Into<String>, handler: H) -> Self {
        let path = path.into();
        if !self.config.scripts.contains_key(&path) {
            self.unknown.push(path.clone());
        }
        self.handlers.insert(path, Arc::new(handler));
        self
    }

    /// Runs until `shutdown` completes, then drains: takes no new jobs, gives
    /// running ones `worker.grace_s` to finish, stops the rest, and returns.
    pub async fn run_until<S: Future<Output = ()> + Send>(self, shutdown: S) -> Result<()> {
        if !self.unknown.is_empty() {
            return Err(Error::Config(format!(
                "handlers registered for paths that are not among the config's scripts: {:?}",
                self.unknown
            )));
        }
        dispatch::run(self.config, self.handlers, self.metrics, shutdown).await
    }
}
