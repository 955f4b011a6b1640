//! `sluice limits`: each concurrency key in use, what it holds and who waits.

use serde::Serialize;
use sluice_shared::error::Result;
use sluice_shared::scripts::scripts;

use crate::Client;

/// One concurrency key in use, as `sluice limits` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LimitState {
    /// The concurrency key.
    pub key: String,
    /// How many slots the key has, as last stamped on a job.
    pub max: u32,
    /// How long a slot stays held after its execution ends, in seconds, as last stamped.
    pub window_s: f64,
    /// Slots held now: running, reserved for a waiter, or in their window.
    pub held: u64,
    /// Jobs waiting for a slot of this key.
    pub waiting: u64,
    /// Unix ms at which the next held slot frees (to a waiter, if one has it
    /// reserved); null when none is held or only running jobs hold the key
    /// (their end is not known yet).
    pub next_free_at: Option<i64>,
}

impl Client {
    /// Every key in use, or just `key`, in key order.
    pub async fn limits(&self, key: Option<&str>) -> Result<Vec<LimitState>> {
        let mut con = self.pool.get().await?;
        let mut stamped: Vec<(String, String)> = match key {
            Some(k) => {
                let v: Option<String> = redis::cmd("HGET")
                    .arg(self.keys.limits())
                    .arg(k)
                    .query_async(&mut *con)
                    .await?;
                v.map(|v| vec![(k.to_string(), v)]).unwrap_or_default()
            }
            None => {
                redis::cmd("HGETALL")
                    .arg(self.keys.limits())
                    .query_async(&mut *con)
                    .await?
            }
        };
        stamped.sort();
        let mut out = Vec::with_capacity(stamped.len());
        for chunk in stamped.chunks(500) {
            let calls: Vec<_> = chunk
                .iter()
                .map(|(k, _)| {
                    let mut c = scripts().limit_state.call();
                    c.key(self.keys.slots(k))
                        .key(self.keys.wait(k))
                        .key(self.keys.delayed())
                        .arg(k);
                    c
                })
                .collect();
            let states: Vec<(u64, u64, u64, i64, i64)> = sluice_shared::scripts::query_pipelined(
                &mut *con,
                &calls.iter().collect::<Vec<_>>(),
            )
            .await?;
            for ((k, stamp), (held, reserved, unknown, next, _now)) in chunk.iter().zip(states) {
                let mut parts = stamp.split(' ');
                let max = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
                let window_ms: u64 = parts.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                out.push(LimitState {
                    key: k.clone(),
                    max,
                    window_s: window_ms as f64 / 1000.0,
                    held,
                    waiting: reserved + unknown,
                    next_free_at: (next >= 0).then_some(next),
                });
            }
        }
        Ok(out)
    }
}
