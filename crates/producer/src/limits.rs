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
    /// The limit set at run time (`sluice limits set`), which wins over the
    /// stamped `max` and `window_s` above; absent when none is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<SetLimit>,
}

/// A limit set at run time.
#[derive(Clone, Debug, Serialize)]
pub struct SetLimit {
    /// Slots of the key.
    pub max: u32,
    /// How long a slot stays held after its execution ends, in seconds.
    pub window_s: f64,
}

impl Client {
    /// Every key in use, or just `key`, in key order.
    pub async fn limits(&self, key: Option<&str>) -> Result<Vec<LimitState>> {
        match key {
            Some(k) => self.limits_of(&[k]).await,
            None => {
                let mut con = self.pool.get().await?;
                // Each key is in use in one partition only: its own.
                let mut fields: Vec<(String, String)> = Vec::new();
                for keys in self.parts.all() {
                    let got: Vec<(String, String)> = redis::cmd("HGETALL")
                        .arg(keys.limits())
                        .query_async(&mut *con)
                        .await?;
                    fields.extend(got);
                }
                self.limit_states(&mut con, fields).await
            }
        }
    }

    /// The keys in use, sorted, without reading their state: for listing a
    /// page of them (see [`Client::limits_of`]).
    pub async fn limit_keys(&self) -> Result<Vec<String>> {
        let mut con = self.pool.get().await?;
        let mut fields: Vec<String> = Vec::new();
        for keys in self.parts.all() {
            let got: Vec<String> = redis::cmd("HKEYS")
                .arg(keys.limits())
                .query_async(&mut *con)
                .await?;
            fields.extend(got);
        }
        let mark = sluice_shared::keys::OVERRIDE_MARK;
        let mut keys: Vec<String> = fields
            .into_iter()
            .map(|f| f.strip_prefix(mark).map(str::to_string).unwrap_or(f))
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// The state of each of `keys` that is in use, in key order.
    pub async fn limits_of<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<LimitState>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let mut con = self.pool.get().await?;
        let mut fields = Vec::new();
        for (p, part) in self.parts.all().iter().enumerate() {
            let mut names = Vec::new();
            for k in keys.iter().filter(|k| self.parts.of_key(k.as_ref()) == p) {
                names.push(k.as_ref().to_string());
                names.push(sluice_shared::keys::override_field(k.as_ref()));
            }
            if names.is_empty() {
                continue;
            }
            let values: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(part.limits())
                .arg(&names)
                .query_async(&mut *con)
                .await?;
            fields.extend(
                names
                    .into_iter()
                    .zip(values)
                    .filter_map(|(f, v)| v.map(|v| (f, v))),
            );
        }
        self.limit_states(&mut con, fields).await
    }

    /// The states of the keys of `fields`, fields of the limits hash.
    async fn limit_states(
        &self,
        con: &mut sluice_shared::redis_conn::Pooled,
        fields: Vec<(String, String)>,
    ) -> Result<Vec<LimitState>> {
        let mark = sluice_shared::keys::OVERRIDE_MARK;
        // Stamps and limits set at run time, by key; a key with only the
        // latter is shown too.
        let mut overrides = std::collections::HashMap::new();
        let mut stamped: Vec<(String, String)> = Vec::new();
        for (f, v) in fields {
            match f.strip_prefix(mark) {
                Some(k) => {
                    overrides.insert(k.to_string(), v);
                }
                None => stamped.push((f, v)),
            }
        }
        for (k, v) in &overrides {
            if !stamped.iter().any(|(s, _)| s == k) {
                stamped.push((k.clone(), v.clone()));
            }
        }
        stamped.sort();
        let mut out = Vec::with_capacity(stamped.len());
        // One pipeline per partition: a cluster runs a pipeline on one node.
        for (p, part) in self.parts.all().iter().enumerate() {
            let mine: Vec<(String, String)> = stamped
                .iter()
                .filter(|(k, _)| self.parts.of_key(k) == p)
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let tags = sluice_shared::tags::known(part, &mut **con).await?;
            self.states_in(con, part, &tags, &mine, &overrides, &mut out)
                .await?;
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The states of `stamped` keys, all of partition `part`, added to `out`.
    async fn states_in(
        &self,
        con: &mut sluice_shared::redis_conn::Pooled,
        part: &sluice_shared::Keys,
        tags: &[String],
        stamped: &[(String, String)],
        overrides: &std::collections::HashMap<String, String>,
        out: &mut Vec<LimitState>,
    ) -> Result<()> {
        for chunk in stamped.chunks(500) {
            let calls: Vec<_> = chunk
                .iter()
                .map(|(k, _)| {
                    let mut c = scripts().limit_state.call();
                    c.key(part.slots(k)).key(part.wait(k)).key(part.running());
                    // A waiter's reserved slot is in its own tag's delayed set.
                    for t in tags.iter() {
                        c.key(part.delayed(t));
                    }
                    c.arg(k);
                    c
                })
                .collect();
            type Reply = (u64, u64, u64, i64, i64, i64);
            let states: Vec<Reply> = sluice_shared::scripts::query_pipelined(
                &mut **con,
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
                    set: overrides.get(k).and_then(|o| {
                        let (m, w) = o.split_once(' ')?;
                        Some(SetLimit {
                            max: m.parse().ok()?,
                            window_s: w.parse::<u64>().ok()? as f64 / 1000.0,
                        })
                    }),
                });
            }
        }
        Ok(())
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

    /// Sets the limit of a key at run time: it overrides the limit stamped on
    /// every job of the key, waiting or future, until `unset_limit`.
    /// Lowering it stops no running job; raising it admits waiters at once.
    pub async fn set_limit(&self, key: &str, max: u32, window: std::time::Duration) -> Result<()> {
        if max < 1 {
            return Err(sluice_shared::Error::invalid("max", "must be at least 1"));
        }
        self.override_limit(key, max, window.as_millis() as u64)
            .await
    }

    /// Removes a limit set at run time: jobs are admitted by their stamped
    /// limits again.
    pub async fn unset_limit(&self, key: &str) -> Result<()> {
        self.override_limit(key, 0, 0).await
    }

    async fn override_limit(&self, key: &str, max: u32, window_ms: u64) -> Result<()> {
        let window_ms = window_ms.min(MAX_MS);
        let extra = [max as u64, window_ms];
        self.key_script(&scripts().limit_override, key, &extra)
            .await
            .map(|_: i64| ())
    }

    async fn set_pause(&self, key: &str, ms: u64) -> Result<i64> {
        self.key_script(&scripts().pause, key, &[ms.min(MAX_MS)])
            .await
    }

    /// Calls a script that acts on one concurrency key (its slots and wait
    /// list, then the key and `extra` as arguments). The key must be one that
    /// enqueue could render: anything else names no key.
    async fn key_script<T: redis::FromRedisValue>(
        &self,
        script: &'static sluice_shared::scripts::Script,
        key: &str,
        extra: &[u64],
    ) -> Result<T> {
        sluice_shared::template::check_text(
            "concurrency key",
            key,
            sluice_shared::template::MAX_KEY_BYTES,
        )?;
        let mut con = self.pool.get().await?;
        // A pause or a limit set on a new namespace fixes its partition count.
        self.record_partitions(&mut con).await?;
        let keys = self.parts.by_key(key);
        let mut call = script.call_in(keys);
        call.key(keys.slots(key)).key(keys.wait(key)).arg(key);
        for v in extra {
            call.arg(*v);
        }
        call.query(&mut *con).await
    }
}

/// The longest pause or window, in ms.
const MAX_MS: u64 = (sluice_shared::config::MAX_SECONDS * 1000.0) as u64;
