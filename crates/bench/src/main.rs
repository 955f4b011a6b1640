//! `sluice-bench`: the benchmark behind `scripts/bench.sh`.
//!
//! `sluice-bench worker --config F` is a worker whose handler for every
//! configured path is a no-op Rust handler (no process per job);
//! `sluice-bench run SCENARIO …` starts such workers, drives a scenario, checks
//! it (slots over max or jobs lost fail it loudly), prints a table and writes
//! `target/bench/SCENARIO.json`.

mod cluster;
mod fleet;
mod measure;
mod redis_stats;
mod report;
mod scenarios;
mod ui;

// A job's life allocates many small, short-lived objects across threads;
// glibc's allocator was a fifth of the worker's CPU time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sluice-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run as a benchmark worker (no-op handlers); prints its round trips on exit.
    Worker {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a scenario against a Redis that is already up.
    Run(scenarios::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = match cli.cmd {
        Cmd::Worker { config } => rt.block_on(fleet::run_worker(config)),
        Cmd::Run(args) => rt.block_on(scenarios::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
