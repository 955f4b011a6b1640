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
    /// How many slots the key has, as stamped on one of its live jobs (or,
    /// for a key none of whose jobs is live, on the job that put it in
    /// use); 0 when no job of it was found (a key paused by hand before any
    /// job of it ran).
    pub max: u32,
    /// How long a slot stays held after its execution ends, in seconds, as
    /// stamped with `max`.
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
    /// Every key in use, or just `key`, in key order. A key is in use while
    /// the limits registry names it (from the admission of a job that waits
    /// for it, or that a slow path admits, until retention finds it idle)
    /// or its running count does (while its jobs run, or it holds slots of
    /// its own); or while a limit is set on it at run time.
    pub async fn limits(&self, key: Option<&str>) -> Result<Vec<LimitState>> {
        match key {
            Some(k) => self.limits_of(&[k]).await,
            None => {
                let mut con = self.pool.get().await?;
                // Each key is in use in one partition only: its own.
                let mut fields: Vec<(String, String)> = Vec::new();
                for keys in self.parts.all() {
                    let (registry, running): (Vec<(String, String)>, Vec<String>) = redis::pipe()
                        .hgetall(keys.limits())
                        .hkeys(keys.running())
                        .query_async(&mut *con)
                        .await?;
                    let running = running.into_iter().filter(|k| !is_marked(k)).collect();
                    fields.extend(with_live_stamps(&mut con, keys, registry, running).await?);
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
            let (registry, running): (Vec<String>, Vec<String>) = redis::pipe()
                .hkeys(keys.limits())
                .hkeys(keys.running())
                .query_async(&mut *con)
                .await?;
            fields.extend(registry);
            fields.extend(running.into_iter().filter(|k| !is_marked(k)));
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
            let mine: Vec<&str> = keys
                .iter()
                .map(|k| k.as_ref())
                .filter(|k| self.parts.of_key(k) == p)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut names = Vec::new();
            for k in &mine {
                names.push(k.to_string());
                names.push(sluice_shared::keys::override_field(k));
            }
            let (values, counts): (Vec<Option<String>>, Vec<Option<String>>) = redis::pipe()
                .cmd("HMGET")
                .arg(part.limits())
                .arg(&names)
                .cmd("HMGET")
                .arg(part.running())
                .arg(&mine)
                .query_async(&mut *con)
                .await?;
            let registry = names
                .into_iter()
                .zip(values)
                .filter_map(|(f, v)| v.map(|v| (f, v)))
                .collect();
            let running = mine
                .iter()
                .zip(counts)
                .filter(|(_, c)| c.is_some())
                .map(|(k, _)| k.to_string())
                .collect();
            fields.extend(with_live_stamps(&mut con, part, registry, running).await?);
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

/// Whether a field of the running counts is the pin (held.lua) rather than
/// a key: no key holds a control character.
fn is_marked(field: &str) -> bool {
    field.starts_with(sluice_shared::keys::OVERRIDE_MARK)
}

/// The fields of one partition's limits registry (`registry`: keys and
/// limits set at run time, with their values), with the keys its running
/// counts name (`running`) added: each of those with the limit stamped on
/// one of its live jobs (running, holding a slot, or first in its wait
/// line), which is the one being enforced, rather than the registry's. A
/// key admitted by its count alone is in no registry (held.lua). A key of
/// neither that holds only a pause (paused by hand before any job of it
/// was admitted) gets the stamp `0 0`: no limit known. One that holds
/// nothing any more (its jobs ended, or its window slots expired, between
/// the reads) is left out: it is no longer in use.
async fn with_live_stamps(
    con: &mut sluice_shared::redis_conn::Pooled,
    part: &sluice_shared::Keys,
    registry: Vec<(String, String)>,
    running: Vec<String>,
) -> Result<Vec<(String, String)>> {
    let mut fields: std::collections::BTreeMap<String, String> = registry.into_iter().collect();
    if running.is_empty() {
        return Ok(fields.into_iter().collect());
    }
    let (jobs, paused) = live_jobs(con, part, &running).await?;
    let ids: Vec<String> = jobs.values().cloned().collect();
    let specs = sluice_shared::records::read_specs(&mut **con, part, &ids).await?;
    for (id, spec) in ids.iter().zip(specs) {
        let Some(max) = spec.max else { continue };
        if jobs.get(&spec.ckey) == Some(id) {
            let stamp = format!("{max} {}", spec.window_ms.unwrap_or(0));
            fields.insert(spec.ckey, stamp);
        }
    }
    for k in paused {
        fields.entry(k).or_insert_with(|| "0 0".to_string());
    }
    Ok(fields.into_iter().collect())
}

/// Keys and the ids of their jobs.
type LiveJobs = std::collections::HashMap<String, String>;

/// One live job of each of `keys` (all of partition `part`) that has one:
/// found by its entry in the lease keys (running), else in its key's slots
/// (an ended execution in its window, a reservation) or wait line; and the
/// keys without one that hold a pause.
async fn live_jobs(
    con: &mut sluice_shared::redis_conn::Pooled,
    part: &sluice_shared::Keys,
    keys: &[String],
) -> Result<(LiveJobs, Vec<String>)> {
    use sluice_shared::entry::{Entry, ID_LEN};
    let wanted: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
    let leases: Vec<String> = redis::cmd("ZRANGE")
        .arg(part.leases())
        .arg(0)
        .arg(-1)
        .query_async(&mut **con)
        .await?;
    let items = sluice_shared::lease::read(&mut **con, &leases).await?;
    let mut found = std::collections::HashMap::new();
    for raw in sluice_shared::lease::entries(&items) {
        if let Some(Entry::Job { id, ckey }) = Entry::parse(raw) {
            if wanted.contains(ckey.as_str()) {
                found.entry(ckey).or_insert(id);
            }
        }
    }
    let rest: Vec<&String> = keys.iter().filter(|k| !found.contains_key(*k)).collect();
    let mut paused = Vec::new();
    if rest.is_empty() {
        return Ok((found, paused));
    }
    let mut pipe = redis::pipe();
    for k in &rest {
        pipe.zrange(part.slots(k), 0, 2).lrange(part.wait(k), 0, 0);
    }
    let lists: Vec<Vec<String>> = pipe.query_async(&mut **con).await?;
    for (k, pair) in rest.iter().zip(lists.chunks(2)) {
        // A slot's member is `<id>#...`; `pause` names no job.
        let id = pair
            .iter()
            .flatten()
            .filter(|m| m.as_str() != "pause")
            .find_map(|m| m.get(..ID_LEN));
        if let Some(id) = id {
            found.insert(k.to_string(), id.to_string());
        } else if pair[0].iter().any(|m| m == "pause") {
            paused.push(k.to_string());
        }
    }
    Ok((found, paused))
}
