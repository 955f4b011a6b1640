//! A namespace at a glance, for the dashboard's overview: how many jobs are
//! in each status, how many finished lately, and what waits on limits.

use serde::Serialize;
use sluice_shared::error::Result;
use sluice_shared::state::State;

use crate::Client;

/// How far back "finished lately" looks, in ms.
pub const RECENT_MS: i64 = 10_000;
/// The most finished jobs of each status looked at for the recent count.
const RECENT_CAP: isize = 2_000;

/// Counts of a namespace's jobs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overview {
    /// Redis time when read, Unix ms.
    pub now: i64,
    /// Jobs on a ready list, of every tag: ready to run now.
    pub ready: u64,
    /// The other unfinished jobs that do not wait on a limit: running, or
    /// scheduled for a known moment (a delay, a retry's backoff). The
    /// delayed sets cannot tell these apart cheaply: they also hold waiting
    /// jobs' reserved moments.
    pub running_or_scheduled: u64,
    /// Jobs waiting on a concurrency limit.
    pub waiting: u64,
    /// Finished jobs stored, by status.
    pub succeeded: u64,
    /// Failed jobs stored.
    pub failed: u64,
    /// Cancelled jobs stored.
    pub cancelled: u64,
    /// Jobs that finished in the last [`RECENT_MS`] (at least; see
    /// `recent_capped`).
    pub finished_recently: u64,
    /// Whether the recent count hit its cap, so that the rate is a floor.
    pub recent_capped: bool,
}

impl Overview {
    /// Jobs finished per second, over the recent span.
    pub fn jobs_per_s(&self) -> f64 {
        self.finished_recently as f64 * 1000.0 / RECENT_MS as f64
    }
}

impl Client {
    /// The namespace's counts now: the sums over its partitions.
    pub async fn overview(&self) -> Result<Overview> {
        let mut all: Option<Overview> = None;
        for keys in self.parts.all() {
            let o = self.overview_of(keys).await?;
            all = Some(match all {
                None => o,
                Some(a) => Overview {
                    now: a.now.max(o.now),
                    ready: a.ready + o.ready,
                    running_or_scheduled: a.running_or_scheduled + o.running_or_scheduled,
                    waiting: a.waiting + o.waiting,
                    succeeded: a.succeeded + o.succeeded,
                    failed: a.failed + o.failed,
                    cancelled: a.cancelled + o.cancelled,
                    finished_recently: a.finished_recently + o.finished_recently,
                    recent_capped: a.recent_capped || o.recent_capped,
                },
            });
        }
        Ok(all.expect("a namespace has at least one partition"))
    }

    /// The counts of one partition.
    async fn overview_of(&self, keys: &sluice_shared::Keys) -> Result<Overview> {
        let mut con = self.pool.get().await?;
        let tags = sluice_shared::tags::known(keys, &mut *con).await?;
        let finals = ["succeeded", "failed", "cancelled"];
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("HMGET").arg(keys.stats()).arg(&[
            "active",
            "waiting",
            "succeeded",
            "failed",
            "cancelled",
        ]);
        for s in finals {
            pipe.lrange(keys.idx_status(s), -RECENT_CAP, -1);
        }
        for t in tags.iter() {
            pipe.llen(keys.ready(t));
        }
        let mut replies: Vec<redis::Value> = pipe.query_async(&mut *con).await?;
        let rest = replies.split_off(2 + finals.len());
        let mut head = replies.into_iter();
        let (secs, micros): (i64, i64) = parse(head.next().unwrap_or(redis::Value::Nil))?;
        let now = secs * 1000 + micros / 1000;
        let counts: Vec<Option<i64>> = parse(head.next().unwrap_or(redis::Value::Nil))?;
        let n = |i: usize| counts.get(i).copied().flatten().unwrap_or(0).max(0) as u64;
        let mut per_status: Vec<Vec<String>> = Vec::new();
        for v in head {
            per_status.push(parse(v)?);
        }
        let mut ready = 0u64;
        for v in rest {
            ready += parse::<u64>(v)?;
        }
        let (mut finished_recently, mut capped) = (0, false);
        for entries in per_status {
            let ids = crate::runs::job_ids(entries, None);
            let mut recent = 0u64;
            for chunk in ids.chunks(1000) {
                let states: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(keys.state())
                    .arg(chunk)
                    .query_async(&mut *con)
                    .await?;
                recent += states
                    .iter()
                    .flatten()
                    .filter_map(|s| State::parse(s))
                    .filter(|s| s.since >= now - RECENT_MS)
                    .count() as u64;
            }
            // Every one looked at finished lately: more may have.
            capped |= recent == RECENT_CAP as u64;
            finished_recently += recent;
        }
        let (active, waiting) = (n(0), n(1));
        let ready = ready.min(active.saturating_sub(waiting));
        Ok(Overview {
            now,
            ready,
            running_or_scheduled: active.saturating_sub(waiting + ready),
            waiting,
            succeeded: n(2),
            failed: n(3),
            cancelled: n(4),
            finished_recently,
            recent_capped: capped,
        })
    }
}

fn parse<T: redis::FromRedisValue>(v: redis::Value) -> redis::RedisResult<T> {
    redis::from_redis_value(v).map_err(redis::RedisError::from)
}
