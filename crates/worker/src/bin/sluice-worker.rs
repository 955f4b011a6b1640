//! `sluice-worker`: runs the command scripts of the config under their global
//! concurrency limits until SIGTERM or SIGINT, then drains.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice_shared::logging;
use sluice_worker::{Config, Worker};

// A job's life allocates many small, short-lived objects across threads;
// glibc's allocator was a fifth of the worker's CPU time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice-worker", version, about = "Run Sluice jobs from Redis")]
struct Cli {
    /// Config file (TOML); SLUICE_CONFIG works too.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
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
