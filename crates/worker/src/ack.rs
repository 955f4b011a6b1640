//! Acknowledging ended executions, on a task and connection of their own so
//! that recording results overlaps with taking new jobs. Whatever ended while
//! one ack.lua call was in flight goes in the next call.

use std::time::Duration;

use deadpool_redis::Pool;
use sluice_shared::scripts::{scripts, Invocation};
use sluice_shared::Keys;
use tokio::sync::mpsc;

use crate::execute::Outcome;
use sluice_shared::entry::Entry;

/// Most executions acknowledged by one call.
const BATCH: usize = 500;

/// What the acknowledger records.
pub enum AckMsg {
    /// An execution ended.
    Done(Done),
    /// Every execution admitted under this lease key has been reported (sent
    /// after their `Done`s): the key and its lease go.
    LeaseEnded(std::sync::Arc<str>),
}

/// An execution that ended, to be acknowledged.
pub struct Done {
    pub entry: String,
    pub attempt: u32,
    pub outcome: Outcome,
    /// The first retry's delay, from this worker's config for the job's path.
    pub backoff_ms: u64,
    /// The flow run this job is a step of, or "".
    pub parent: String,
    /// The start in its running state (Unix ms), as admit.lua handed it
    /// over: ack.lua checks the state against it.
    pub started: i64,
}

/// Runs until every sender is gone and everything received is recorded.
pub async fn ack_loop(pool: Pool, keys: Keys, mut rx: mpsc::UnboundedReceiver<AckMsg>) {
    let mut held: Option<deadpool_redis::Connection> = None;
    let mut batch: Vec<Done> = Vec::new();
    let mut leases: Vec<std::sync::Arc<str>> = Vec::new();
    let mut pause = Duration::from_millis(50);
    let take = |m: AckMsg, batch: &mut Vec<Done>, leases: &mut Vec<_>| match m {
        AckMsg::Done(d) => batch.push(d),
        AckMsg::LeaseEnded(l) => leases.push(l),
    };
    loop {
        if batch.is_empty() && leases.is_empty() {
            match rx.recv().await {
                Some(m) => take(m, &mut batch, &mut leases),
                None => return,
            }
        }
        while batch.len() + leases.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch, &mut leases),
                Err(_) => break,
            }
        }
        match send(&pool, &keys, &mut held, &batch, &leases).await {
            Ok(refused) => {
                for e in refused {
                    tracing::warn!(entry = %e, "late result refused: the attempt had been taken over");
                }
                batch.clear();
                leases.clear();
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
    leases: &[std::sync::Arc<str>],
) -> sluice_shared::Result<Vec<String>> {
    if held.is_none() {
        *held = Some(pool.get().await?);
    }
    let con = held.as_mut().expect("connection just set");
    let timer = std::time::Instant::now();
    let refused = ack_call(keys, batch, leases).query(&mut **con).await;
    ::metrics::histogram!(crate::metrics::SCRIPT_SECONDS, "script" => "ack")
        .record(timer.elapsed().as_secs_f64());
    refused
}

fn ack_call(keys: &Keys, acks: &[Done], leases: &[std::sync::Arc<str>]) -> Invocation {
    let mut call = scripts().ack.call_in(keys);
    // Each concurrency key and flow once, however many executions share it:
    // most executions have neither, and name no key of their own.
    let mut ckeys: Vec<&str> = Vec::new();
    let mut parents: Vec<&str> = Vec::new();
    for a in acks {
        let ckey = Entry::ckey_of(&a.entry);
        if !ckey.is_empty() && !ckeys.contains(&ckey) {
            ckeys.push(ckey);
        }
        if !a.parent.is_empty() && !parents.contains(&a.parent.as_str()) {
            parents.push(&a.parent);
        }
    }
    call.arg(ckeys.len());
    for k in &ckeys {
        call.key(keys.slots(k)).key(keys.wait(k)).arg(*k);
    }
    call.arg(parents.len());
    for p in &parents {
        call.key(keys.flow_state(p)).arg(*p);
    }
    call.arg(leases.len());
    for l in leases {
        call.key(l.to_string());
    }
    for a in acks {
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
            .arg(payload);
    }
    call
}
