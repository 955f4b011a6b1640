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
    /// Unix ms at which the key's pause ends (a job's Retry-After, or
    /// `sluice pause`); absent when it is not paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<i64>,
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
            type Reply = (u64, u64, u64, i64, i64, i64);
            let states: Vec<Reply> = sluice_shared::scripts::query_pipelined(
                &mut *con,
                &calls.iter().collect::<Vec<_>>(),
            )
            .await?;
            for ((k, stamp), (held, reserved, unknown, next, _now, paused)) in
                chunk.iter().zip(states)
            {
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
                    paused_until: (paused >= 0).then_some(paused),
                });
            }
        }
        Ok(out)
    }
}

impl Client {
    /// Pauses a concurrency key for `d` from now (Redis time): none of its
    /// jobs is admitted until then; running ones are not touched. Returns
    /// the Unix ms the pause ends.
    pub async fn pause(&self, key: &str, d: std::time::Duration) -> Result<i64> {
        self.set_pause(key, d.as_millis().max(1) as u64).await
    }

    /// Ends a key's pause at once; its waiters are admitted as slots allow.
    pub async fn resume(&self, key: &str) -> Result<()> {
        self.set_pause(key, 0).await.map(|_| ())
    }

    async fn set_pause(&self, key: &str, ms: u64) -> Result<i64> {
        // A key as enqueue would render it: anything else names no key.
        sluice_shared::template::check_text(
            "concurrency key",
            key,
            sluice_shared::template::MAX_KEY_BYTES,
        )?;
        let ms = ms.min((sluice_shared::config::MAX_SECONDS * 1000.0) as u64);
        let mut con = self.pool.get().await?;
        let mut call = scripts().pause.call_in(&self.keys);
        call.key(self.keys.slots(key))
            .key(self.keys.wait(key))
            .arg(key)
            .arg(ms);
        call.query(&mut *con).await
    }
}
