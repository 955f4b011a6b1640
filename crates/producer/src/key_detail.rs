//! One concurrency key in detail, for the dashboard's key page: what holds
//! its slots, who waits, and its recent executions.

use std::collections::HashMap;

use sluice_shared::error::Result;
use sluice_shared::job::Job;
use sluice_shared::key_index;

use crate::{Client, LimitState};

/// The most recent jobs of a key read for its timeline.
pub const RECENT_JOBS: isize = 60;
/// The most waiters listed by name.
pub const WAITERS_SHOWN: isize = 50;
/// How many of a key's newest jobs are looked at for the running ones: a
/// running execution is counted per key, not named (see held.lua), so the
/// page finds them by their state. One that started before this many newer
/// jobs of its key is counted in the key's state but not listed.
pub const RUNNING_LOOK: isize = 1000;

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
/// wait; the key's newest jobs (key_index::read_newest).
type KeyReads = (
    (i64, i64),
    Vec<(String, f64)>,
    Vec<String>,
    u64,
    Vec<String>,
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
        let look = RUNNING_LOOK as usize;
        let mut pipe = redis::pipe();
        pipe.cmd("TIME")
            .zrange_withscores(keys.slots(key), 0, -1)
            .lrange(keys.wait(key), 0, WAITERS_SHOWN - 1)
            .llen(keys.wait(key));
        // In the same pipeline, so that the page is one snapshot.
        key_index::read_newest(&mut pipe, keys, key, look);
        let (time, members, waiters, waiting_total, indexed, legacy): KeyReads =
            pipe.query_async(&mut *con).await?;
        let recent_ids = key_index::newest_of(&indexed, legacy, look);
        let running = running_among(&mut con, keys, &recent_ids).await?;
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
        let newest = &recent_ids[..recent_ids.len().min(RECENT_JOBS as usize)];
        let recent = self.jobs(newest).await?.into_iter().flatten().collect();
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
