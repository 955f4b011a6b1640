//! Acknowledging ended executions, on a task and connection of their own so
//! that recording results overlaps with taking new jobs. Whatever ended while
//! one ack.lua call was in flight goes in the next call.

use std::time::Duration;

use deadpool_redis::Pool;
use sluice_shared::scripts::{scripts, Invocation};
use sluice_shared::Keys;
use tokio::sync::mpsc;

use crate::entry_keys::entry_keys;
use crate::execute::Outcome;

/// Most executions acknowledged by one call.
const BATCH: usize = 500;

/// An execution that ended, to be acknowledged.
pub struct Done {
    pub entry: String,
    pub attempt: u32,
    pub outcome: Outcome,
    /// The first retry's delay, from this worker's config for the job's path.
    pub backoff_ms: u64,
    /// The flow run this job is a step of, or "".
    pub parent: String,
    /// The start in its running state and its spec's created_at (Unix ms),
    /// as admit.lua handed them over: ack.lua checks the state against them.
    pub started: i64,
    pub created: i64,
}

/// Runs until every sender is gone and everything received is recorded.
pub async fn ack_loop(pool: Pool, keys: Keys, mut rx: mpsc::UnboundedReceiver<Done>) {
    let mut held: Option<deadpool_redis::Connection> = None;
    let mut batch: Vec<Done> = Vec::new();
    let mut pause = Duration::from_millis(50);
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(d) => batch.push(d),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        match send(&pool, &keys, &mut held, &batch).await {
            Ok(refused) => {
                for e in refused {
                    tracing::warn!(entry = %e, "late result refused: the attempt had been taken over");
                }
                batch.clear();
                pause = Duration::from_millis(50);
            }
            Err(e) => {
                // Kept and sent again: a result is never dropped for a Redis hiccup.
                held = None;
                tracing::warn!(error = %e, pending = batch.len(), "recording results failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn send(
    pool: &Pool,
    keys: &Keys,
    held: &mut Option<deadpool_redis::Connection>,
    batch: &[Done],
) -> sluice_shared::Result<Vec<String>> {
    if held.is_none() {
        *held = Some(pool.get().await?);
    }
    let con = held.as_mut().expect("connection just set");
    let timer = std::time::Instant::now();
    let refused = ack_call(keys, batch).query(&mut **con).await;
    ::metrics::histogram!(crate::metrics::SCRIPT_SECONDS, "script" => "ack")
        .record(timer.elapsed().as_secs_f64());
    refused
}

fn ack_call(keys: &Keys, acks: &[Done]) -> Invocation {
    let mut call = scripts().ack.call_in(keys);
    for a in acks {
        entry_keys(keys, &mut call, &a.entry, &a.parent);
        let (mut outcome, payload) = match &a.outcome {
            Outcome::Ok(v) => ("ok".to_string(), v.to_string()),
            Outcome::Err(e) => (format!("err {}", a.backoff_ms), e.clone()),
            Outcome::Cancelled => ("cancelled".to_string(), "cancelled by request".to_string()),
            Outcome::Lost | Outcome::Parked => {
                unreachable!("lost attempts and parked flows are never acknowledged")
            }
        };
        if !a.parent.is_empty() {
            outcome += " step";
        }
        call.arg(&a.entry)
            .arg(a.attempt)
            .arg(a.started)
            .arg(outcome)
            .arg(payload)
            .arg(a.created);
    }
    call
}
