//! One concurrency key in detail, for the dashboard's key page: what holds
//! its slots, who waits, and its recent executions.

use std::collections::HashMap;

use sluice_shared::entry::Entry;
use sluice_shared::error::Result;
use sluice_shared::job::Job;

use crate::{Client, LimitState, RunsQuery};

/// The most recent jobs of a key read for its timeline.
pub const RECENT_JOBS: isize = 60;
/// The most waiters listed by name.
pub const WAITERS_SHOWN: isize = 50;
/// How many of each status's most recently finished jobs (and of each live
/// structure's entries) are looked at for the key's recent jobs: a key's
/// jobs are picked out of every key's by their entries (runs.rs), so a key
/// whose last jobs finished before this many others of any key shows only
/// its unfinished ones here (`sluice runs --concurrency-key` finds them all).
pub const RECENT_SCAN: usize = 20_000;

/// What one member of a key's slots set says.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// A running execution (or a flow run, for its whole run).
    Running {
        /// The job holding it.
        id: String,
    },
    /// Reserved for a waiting job, due at `due` (Unix ms) when known.
    Reserved {
        /// The waiting job.
        id: String,
        /// When it runs.
        due: Option<i64>,
    },
    /// An ended execution's slot, held for its window until `until`.
    Window {
        /// The job that ended.
        id: String,
        /// When the slot frees (Unix ms).
        until: i64,
    },
    /// The key's pause (no slot): nothing is admitted until `until`.
    Paused {
        /// When it ends (Unix ms).
        until: i64,
    },
}

/// A key's state with its holders, waiters and recent jobs.
#[derive(Clone, Debug)]
pub struct KeyDetail {
    /// Redis time when read, Unix ms.
    pub now: i64,
    /// Its limit and counts, as `limits` shows them; `None` for a key not in use.
    pub state: Option<LimitState>,
    /// Its slots set, read at `now`, soonest to free first.
    pub slots: Vec<Slot>,
    /// The first waiters of its line (ids), and how many wait in all.
    pub waiters: Vec<String>,
    /// Jobs in its wait line.
    pub waiting_total: u64,
    /// Its most recent jobs, newest first.
    pub recent: Vec<Job>,
}

/// Redis time; the slots set with scores; the first waiters; how many
/// wait; the partition's lease keys.
type KeyReads = (
    (i64, i64),
    Vec<(String, f64)>,
    Vec<String>,
    u64,
    Vec<String>,
);

impl Client {
    /// Key `key` in detail.
    pub async fn key_detail(&self, key: &str) -> Result<KeyDetail> {
        let state = self.limits_of(&[key]).await?.pop();
        let mut con = self.pool.get().await?;
        // Everything of a key lives in its partition.
        let keys = self.parts.by_key(key);
        let tags = sluice_shared::tags::known(keys, &mut *con).await?;
        let mut pipe = redis::pipe();
        // In one pipeline, so that what holds the key and who waits are one
        // snapshot.
        pipe.cmd("TIME")
            .zrange_withscores(keys.slots(key), 0, -1)
            .lrange(keys.wait(key), 0, WAITERS_SHOWN - 1)
            .llen(keys.wait(key))
            .zrange(keys.leases(), 0, -1);
        let (time, members, waiters, waiting_total, leases): KeyReads =
            pipe.query_async(&mut *con).await?;
        // A running execution is counted per key, not named (see held.lua):
        // it is found by its entry in the lease keys, and its state.
        let items = sluice_shared::lease::read(&mut *con, &leases).await?;
        let mut leased: Vec<String> = sluice_shared::lease::entries(&items)
            .filter_map(|e| match Entry::parse(e)? {
                Entry::Job { id, ckey } if ckey == key => Some(id),
                _ => None,
            })
            .collect();
        leased.sort();
        leased.dedup();
        let running = running_among(&mut con, keys, &leased).await?;
        let now = time.0 * 1000 + time.1 / 1000;
        // A reserved slot's moment is its waiter's entry in its tag's delayed set.
        let mut due: HashMap<String, i64> = HashMap::new();
        let reserved: Vec<&str> = members
            .iter()
            .filter_map(|(m, _)| m.strip_suffix("#r"))
            .collect();
        if !reserved.is_empty() {
            let mut pipe = redis::pipe();
            for id in &reserved {
                for t in tags.iter() {
                    pipe.zscore(keys.delayed(t), format!("{id} {key}"));
                }
            }
            let scores: Vec<Option<f64>> = pipe.query_async(&mut *con).await?;
            for (i, id) in reserved.iter().enumerate() {
                let found = scores[i * tags.len()..(i + 1) * tags.len()]
                    .iter()
                    .flatten()
                    .next();
                if let Some(s) = found {
                    due.insert(id.to_string(), *s as i64);
                }
            }
        }
        let mut slots: Vec<Slot> = running.into_iter().map(|id| Slot::Running { id }).collect();
        slots.extend(
            members
                .into_iter()
                .filter(|(_, score)| *score > now as f64)
                .map(|(m, score)| {
                    let id = m.get(..36).unwrap_or(&m).to_string();
                    if m == "pause" {
                        Slot::Paused {
                            until: score as i64,
                        }
                    } else if score.is_infinite() && m.ends_with("#r") {
                        let due = due.get(&id).copied();
                        Slot::Reserved { id, due }
                    } else if score.is_infinite() {
                        // No other member is held open-ended.
                        Slot::Reserved { id, due: None }
                    } else {
                        Slot::Window {
                            id,
                            until: score as i64,
                        }
                    }
                }),
        );
        drop(con);
        let recent = self
            .runs(&RunsQuery {
                concurrency_key: Some(key.to_string()),
                limit: RECENT_JOBS as usize,
                scan_limit: Some(RECENT_SCAN),
                ..Default::default()
            })
            .await?;
        Ok(KeyDetail {
            now,
            state,
            slots,
            waiters: waiters
                .into_iter()
                .map(|w| w.get(..36).unwrap_or(&w).to_string())
                .collect(),
            waiting_total,
            recent,
        })
    }
}

/// Which of `ids` are running now, by their states.
async fn running_among(
    con: &mut sluice_shared::redis_conn::Pooled,
    keys: &sluice_shared::Keys,
    ids: &[String],
) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let states: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(keys.state())
        .arg(ids)
        .query_async(&mut **con)
        .await?;
    Ok(ids
        .iter()
        .zip(states)
        .filter(|(_, st)| {
            st.as_deref()
                .and_then(sluice_shared::state::State::parse)
                .is_some_and(|st| st.status == "running")
        })
        .map(|(id, _)| id.clone())
        .collect())
}
