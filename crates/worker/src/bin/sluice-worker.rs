//! `sluice-worker`: runs the command scripts of the config under their global
//! concurrency limits until SIGTERM or SIGINT, then drains.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice_shared::logging;
use sluice_worker::Worker;

// A job's life allocates many small, short-lived objects across threads;
// glibc's allocator was a fifth of the worker's CPU time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice-worker",
    version,
    about = "Run Sluice jobs from Redis until SIGTERM or SIGINT, then drain",
    after_help = "\
Exit codes:
  0  stopped by SIGTERM or SIGINT after draining
  2  usage error: an unknown flag or value
  3  error: bad config, Redis unreachable at start

Config: --config PATH, else $SLUICE_CONFIG, else ./sluice.toml. Settings can be
overridden from the environment: SLUICE_REDIS_URL, SLUICE_WORKER__CONCURRENCY..."
)]
struct Cli {
    /// Config file (TOML); else $SLUICE_CONFIG, else ./sluice.toml.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match sluice_shared::config::load_for_cli(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-worker: {e}");
            return ExitCode::from(3);
        }
    };
    logging::init(&config.log_format);
    // Handlers go in before any job is taken: a SIGTERM that arrived before
    // them would kill the process instead of draining it.
    let shutdown = match shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice-worker: cannot handle signals: {e}");
            return ExitCode::from(3);
        }
    };
    match Worker::new(config).run_until(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sluice-worker: {e}");
            ExitCode::from(3)
        }
    }
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
