//! A worker process with one Rust handler, registered for the path `f/hello`.
//!
//! The path must also be in the config's `[scripts]`, which gives it its limit,
//! timeout and retries (no `command` is needed), for example:
//!
//! ```toml
//! [scripts."f/hello"]
//! timeout_s = 10
//! concurrency = { max = 2, window_s = 1, key = "$workspace/hello" }
//!
//! [scripts."f/hello/upper"]
//! ```
//!
//! Run it with `cargo run -p sluice-worker --example hello_handler -- sluice.toml`
//! (or set `SLUICE_CONFIG`), then enqueue with
//! `sluice --config sluice.toml enqueue f/hello --args '{"name": "ada"}'`.
//! SIGTERM or Ctrl-C stops it after running jobs have had `grace_s` to finish.

use std::path::PathBuf;

use serde_json::json;
use sluice_worker::{BoxError, Config, HandlerResult, JobContext, Worker};

/// The args of `f/hello/upper`.
#[derive(serde::Deserialize)]
struct Upper {
    text: String,
}

/// Its result: any `Serialize` type.
#[derive(serde::Serialize)]
struct Shout {
    text: String,
}

/// Greets `args.name`. An `Err` fails the attempt with that reason; it is
/// retried while the script's `max_attempts` allow.
async fn hello(ctx: JobContext) -> HandlerResult {
    let name = ctx
        .args
        .get("name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| "args.name: expected a string".to_string())?;
    // Stand-in for real work (an API call, a query). Delivery is at least
    // once: use ctx.id as the idempotency key of side effects.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    Ok(json!({
        "greeting": format!("hello, {name}"),
        "job": ctx.id,
        "workspace": ctx.workspace,
        "attempt": ctx.attempt,
        "concurrency_key": ctx.concurrency_key,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).map(PathBuf::from);
    let config = Config::load(path.as_deref())?;
    if !config.scripts.contains_key("f/hello") {
        return Err("the config needs a [scripts.\"f/hello\"] table (see this file)".into());
    }
    // The library logs with `tracing` and leaves the subscriber to the
    // program; this is the one the `sluice-worker` binary installs.
    sluice_shared::logging::init(&config.log_format);

    // Install the signal handlers before any job is taken, so that a SIGTERM
    // arriving early drains the worker instead of killing it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };

    Worker::new(config)
        .handler("f/hello", hello)
        // A closure works too; it may capture shared state (clients, pools).
        // Its args are read into a type of its own: args that do not fit
        // fail the job at once (a Permanent error), without retries.
        .handler("f/hello/upper", |ctx: JobContext| async move {
            let args: Upper = ctx.args_as()?;
            Ok::<_, BoxError>(Shout {
                text: args.text.to_uppercase(),
            })
        })
        .run_until(shutdown)
        .await?;
    Ok(())
}
