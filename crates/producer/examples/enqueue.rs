//! A producer: enqueues jobs, waits for them, and reads back their results,
//! the state of their concurrency keys and the recent runs.
//!
//! It expects a config whose `[scripts]` has `f/hello` (see
//! `crates/worker/examples/hello_handler.rs` for a worker that serves it):
//!
//! ```sh
//! cargo run -p sluice-producer --example enqueue -- sluice.toml
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use sluice_producer::{CancelOutcome, Client, Config, JobRequest, RunsQuery, Status};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).map(PathBuf::from);
    let config = Config::load(path.as_deref())?;
    // Checks that Redis answers; a Client is cheap to clone and share.
    let client = Client::connect(config).await?;

    // One job, in the tenant "acme". Bad input (an unknown path, args that
    // are not an object, a key template naming a missing argument) is an
    // error here, and nothing is written.
    let mut first = JobRequest::new("f/hello", json!({ "name": "ada" }));
    first.workspace = "acme".into();
    let mut ids = vec![client.enqueue(first).await?];

    // Many jobs in few round trips. The whole batch is checked before any of
    // it is written; the ids come back in order.
    let batch: Vec<JobRequest> = ["grace", "alan", "barbara", "edsger"]
        .into_iter()
        .map(|name| JobRequest::new("f/hello", json!({ "name": name })))
        .collect();
    ids.extend(client.enqueue_batch(&batch).await?);
    println!("enqueued {} jobs", ids.len());

    // A delayed job, cancelled before it is due.
    let later = client
        .enqueue(JobRequest {
            delay_ms: 60_000,
            ..JobRequest::new("f/hello", json!({ "name": "nobody" }))
        })
        .await?;
    match client.cancel(&later).await? {
        CancelOutcome::Cancelled => println!("{later}: cancelled before it ran"),
        CancelOutcome::Requested => println!("{later}: running; its worker will stop it"),
        CancelOutcome::AlreadyFinished => println!("{later}: had already finished"),
    }

    // What the limits look like while the jobs are in flight.
    for l in client.limits(None).await? {
        println!(
            "key {}: max {} per {} s, {} held, {} waiting, next free at {:?}",
            l.key, l.max, l.window_s, l.held, l.waiting, l.next_free_at
        );
    }

    let outcome = client.wait(&ids, Some(Duration::from_secs(60))).await?;
    println!(
        "{} succeeded, {} failed, {} cancelled, {} unfinished{}",
        outcome.succeeded,
        outcome.failed,
        outcome.cancelled,
        outcome.unfinished,
        if outcome.timed_out {
            " (timed out)"
        } else {
            ""
        }
    );

    // Each job's record: status, attempts, times (Redis time, Unix ms),
    // result or error.
    for job in client.jobs(&ids).await?.into_iter().flatten() {
        match job.status {
            Status::Succeeded => println!("{} {}: {:?}", job.id, job.status, job.result),
            _ => println!(
                "{} {} (attempt {} of {}): {}",
                job.id,
                job.status,
                job.attempt,
                job.max_attempts,
                job.error.as_deref().unwrap_or("-")
            ),
        }
    }

    // The five most recent failures of this path, newest first.
    let failures = client
        .runs(&RunsQuery {
            path: Some("f/hello".into()),
            status: Some(Status::Failed),
            limit: 5,
            ..RunsQuery::default()
        })
        .await?;
    for job in failures {
        println!("failed earlier: {} {:?}", job.id, job.error);
    }
    Ok(())
}
