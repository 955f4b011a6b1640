use std::time::{Duration, Instant};

use sluice_shared::error::Result;
use sluice_shared::job::Status;

use crate::Client;

/// How a wait ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitOutcome {
    /// Jobs that succeeded (for `wait_all`: the namespace's count).
    pub succeeded: u64,
    /// Jobs that failed (for `wait_all`: the namespace's count).
    pub failed: u64,
    /// Jobs that were cancelled (for `wait_all`: the namespace's count).
    pub cancelled: u64,
    /// Jobs not finished when the wait gave up (0 unless `timed_out`).
    pub unfinished: u64,
    /// Ids that named no job.
    pub missing: Vec<String>,
    /// Whether the timeout passed before every job had finished.
    pub timed_out: bool,
}

impl WaitOutcome {
    /// The command line's exit code: 0 all succeeded, 1 any did not, 4 timeout
    /// (2 is a usage error, 3 any other error).
    pub fn exit_code(&self) -> i32 {
        if self.timed_out {
            4
        } else if self.failed > 0 || self.cancelled > 0 || !self.missing.is_empty() {
            1
        } else {
            0
        }
    }
}

/// Where a wait stands, for progress displays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Jobs waited for; `None` when waiting for the whole namespace.
    pub total: Option<u64>,
    /// Jobs that have succeeded so far (for the whole namespace: its count).
    pub succeeded: u64,
    /// Jobs that have failed so far (for the whole namespace: its count).
    pub failed: u64,
    /// Jobs cancelled so far (for the whole namespace: its count).
    pub cancelled: u64,
    /// Jobs running now.
    pub running: u64,
    /// Waiting for a slot of their concurrency key.
    pub waiting: u64,
    /// Queued or scheduled: waiting for a worker or their delay.
    pub queued: u64,
}

impl Progress {
    /// Jobs finished so far: succeeded, failed or cancelled.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }
}

/// Polling cadence of a wait: quick at first, then gentle on Redis.
fn next_pause(p: Duration) -> Duration {
    (p * 2).min(Duration::from_millis(250))
}

/// How long a wait pauses before it looks again when Redis cannot be reached.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// An error a wait outlives: Redis restarting or out of reach for a moment.
/// (A wait's first look still fails at once: `Client::connect` checked Redis.)
fn transient(e: &sluice_shared::Error) -> bool {
    match e {
        sluice_shared::Error::Redis(r) => {
            r.is_io_error()
                || r.is_connection_dropped()
                || r.is_connection_refusal()
                || r.is_timeout()
        }
        sluice_shared::Error::Pool(_) => true,
        _ => false,
    }
}

impl Client {
    /// Waits until the given jobs have finished, or `timeout` passes. Redis
    /// going away for a while (a restart) is waited out.
    pub async fn wait<I: AsRef<str>>(
        &self,
        ids: &[I],
        timeout: Option<Duration>,
    ) -> Result<WaitOutcome> {
        self.wait_with_progress(ids, timeout, |_| {}).await
    }

    /// `wait`, calling `progress` after every look at the jobs.
    pub async fn wait_with_progress<I: AsRef<str>>(
        &self,
        ids: &[I],
        timeout: Option<Duration>,
        mut progress: impl FnMut(&Progress),
    ) -> Result<WaitOutcome> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut out = WaitOutcome::default();
        let mut pending: Vec<String> = ids.iter().map(|i| i.as_ref().to_string()).collect();
        let mut pause = Duration::from_millis(10);
        loop {
            let mut p = Progress {
                total: Some(ids.len() as u64),
                ..Default::default()
            };
            // One look at every pending job; counted only once it is whole,
            // so a look cut short by a lost connection is simply taken again.
            let look = async {
                let mut con = self.pool.get().await?;
                let mut states: Vec<Option<String>> = vec![None; pending.len()];
                // Each id's state is in the partition its id tells.
                for (p, keys) in self.parts.all().iter().enumerate() {
                    let mine: Vec<usize> = (0..pending.len())
                        .filter(|&i| self.parts.of_id(&pending[i]) == p)
                        .collect();
                    for chunk in mine.chunks(5000) {
                        let asked: Vec<&str> = chunk.iter().map(|&i| pending[i].as_str()).collect();
                        let got: Vec<Option<String>> = redis::cmd("HMGET")
                            .arg(keys.state())
                            .arg(&asked)
                            .query_async(&mut *con)
                            .await?;
                        for (&i, st) in chunk.iter().zip(got) {
                            states[i] = st;
                        }
                    }
                }
                Ok::<_, sluice_shared::Error>(states)
            };
            let states = match look.await {
                Ok(s) => s,
                Err(e) if transient(&e) && deadline.is_none_or(|d| Instant::now() < d) => {
                    tracing::warn!(error = %e, "Redis unreachable while waiting; retrying");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut still = Vec::new();
            for (id, st) in pending.iter().zip(states) {
                let status = st.as_deref().and_then(|s| s.split(' ').next());
                match status.and_then(Status::parse) {
                    None => out.missing.push(id.clone()),
                    Some(Status::Succeeded) => out.succeeded += 1,
                    Some(Status::Failed) => out.failed += 1,
                    Some(Status::Cancelled) => out.cancelled += 1,
                    Some(other) => {
                        match other {
                            Status::Running => p.running += 1,
                            Status::Waiting => p.waiting += 1,
                            _ => p.queued += 1,
                        }
                        still.push(id.clone())
                    }
                }
            }
            (p.succeeded, p.failed, p.cancelled) = (out.succeeded, out.failed, out.cancelled);
            progress(&p);
            pending = still;
            if pending.is_empty() {
                return Ok(out);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                out.unfinished = pending.len() as u64;
                out.timed_out = true;
                return Ok(out);
            }
            tokio::time::sleep(pause).await;
            pause = next_pause(pause);
        }
    }

    /// Waits until no job of the namespace is unfinished.
    pub async fn wait_all(&self, timeout: Option<Duration>) -> Result<WaitOutcome> {
        self.wait_all_with_progress(timeout, |_| {}).await
    }

    /// `wait_all`, calling `progress` after every look at the namespace.
    pub async fn wait_all_with_progress(
        &self,
        timeout: Option<Duration>,
        mut progress: impl FnMut(&Progress),
    ) -> Result<WaitOutcome> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut pause = Duration::from_millis(10);
        loop {
            let look = async {
                let mut con = self.pool.get().await?;
                // Sums over the partitions, one pipeline each.
                let mut counts: Vec<Option<i64>> = vec![Some(0); 5];
                let mut queued = 0u64;
                for keys in self.parts.all() {
                    let tags = sluice_shared::tags::known(keys, &mut *con).await?;
                    let mut pipe = redis::pipe();
                    pipe.cmd("HMGET").arg(keys.stats()).arg(&[
                        "active",
                        "succeeded",
                        "failed",
                        "cancelled",
                        "waiting",
                    ]);
                    for t in tags.iter() {
                        pipe.llen(keys.ready(t)).zcard(keys.delayed(t));
                    }
                    let mut r: Vec<redis::Value> = pipe.query_async(&mut *con).await?;
                    let sizes = r.split_off(1);
                    let part: Vec<Option<i64>> =
                        redis::from_redis_value(r.remove(0)).map_err(redis::RedisError::from)?;
                    for (sum, c) in counts.iter_mut().zip(part) {
                        *sum = Some(sum.unwrap_or(0) + c.unwrap_or(0).max(0));
                    }
                    // Ready and delayed entries, of every tag.
                    for v in sizes {
                        queued +=
                            redis::from_redis_value::<u64>(v).map_err(redis::RedisError::from)?;
                    }
                }
                Ok::<_, sluice_shared::Error>((counts, queued))
            };
            let (counts, queued) = match look.await {
                Ok(r) => r,
                Err(e) if transient(&e) && deadline.is_none_or(|d| Instant::now() < d) => {
                    tracing::warn!(error = %e, "Redis unreachable while waiting; retrying");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let count = |i: usize| counts[i].unwrap_or(0).max(0) as u64;
            let (active, succeeded, failed, cancelled, waiting) =
                (count(0), count(1), count(2), count(3), count(4));
            // Running is what is neither queued nor waiting. The delayed set
            // also holds slots reserved for waiters, hence the clamp.
            let queued = queued.min(active.saturating_sub(waiting));
            let running = active.saturating_sub(waiting + queued);
            progress(&Progress {
                total: None,
                succeeded,
                failed,
                cancelled,
                running,
                waiting,
                queued,
            });
            let mut out = WaitOutcome {
                succeeded,
                failed,
                cancelled,
                ..Default::default()
            };
            if active == 0 {
                return Ok(out);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                out.unfinished = active;
                out.timed_out = true;
                return Ok(out);
            }
            tokio::time::sleep(pause).await;
            pause = next_pause(pause);
        }
    }
}
