//! Retention: finished jobs that ended more than `retention.keep_s` ago, or
//! beyond the newest `retention.keep_max`, are removed with their index entries, oldest
//! first, a batch at a time. Every worker runs it; purge.lua re-checks each job,
//! so workers racing here remove nothing twice. Each pass also prunes the
//! registry of concurrency keys of those that hold and wait for nothing.

use std::time::Duration;

use sluice_shared::config::RetentionConfig;
use sluice_shared::entry::ID_LEN;
use sluice_shared::records::{read_jobs, read_specs};
use sluice_shared::redis_conn::Pool;
use sluice_shared::scripts::scripts;
use sluice_shared::{Keys, Result};

const BATCH: isize = 500;

pub async fn retention_loop(pool: Pool, keys: Keys, cfg: RetentionConfig) {
    let every = Duration::from_secs_f64(cfg.every_s);
    loop {
        tokio::time::sleep(every).await;
        loop {
            match purge_once(&pool, &keys, &cfg).await {
                Ok(n) if n as isize == BATCH => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(removed = n, "retention removed finished jobs");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed");
                    break;
                }
            }
        }
        match prune_limits(&pool, &keys).await {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "idle concurrency keys forgotten"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning idle concurrency keys failed"),
        }
    }
}

/// Walks the registry of concurrency keys, then the running counts, a page
/// at a time, and removes those that hold nothing and have nothing waiting
/// (prune_limits.lua). The running counts are walked too because a key
/// admitted by its count alone is not in the registry (held.lua): a field
/// of theirs left marking keys of its own (` s`) after its window slots
/// expired on their own goes this way.
pub async fn prune_limits(pool: &Pool, keys: &Keys) -> Result<usize> {
    let mut con = pool.get().await?;
    let mut pruned = 0;
    for hash in [keys.limits(), keys.running()] {
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(&hash)
                .arg(cursor)
                .arg("COUNT")
                .arg(200)
                .query_async(&mut *con)
                .await?;
            // HSCAN pages are field, value, field, value... Limits set at
            // run time stay, idle or not; the running counts' pin is no key.
            let names: Vec<&String> = page
                .iter()
                .step_by(2)
                .filter(|n| !n.starts_with(sluice_shared::keys::OVERRIDE_MARK))
                .collect();
            if !names.is_empty() {
                let mut call = scripts().prune_limits.call();
                call.key(keys.limits()).key(keys.running());
                for k in &names {
                    call.key(keys.slots(k)).key(keys.wait(k)).arg(k.as_str());
                }
                pruned += call.query::<usize, _>(&mut *con).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(pruned)
}

/// One batch: returns how many jobs were removed.
pub async fn purge_once(pool: &Pool, keys: &Keys, cfg: &RetentionConfig) -> Result<usize> {
    let mut con = pool.get().await?;
    let mut pipe = redis::pipe();
    pipe.cmd("TIME");
    for s in FINAL {
        pipe.llen(keys.idx_status(s))
            .lrange(keys.idx_status(s), 0, BATCH - 1);
    }
    type Head = Vec<String>;
    let ((secs, micros), na, a, nb, b, nc, c): ((i64, i64), i64, Head, i64, Head, i64, Head) =
        pipe.query_async(&mut *con).await?;
    let cutoff = secs * 1000 + micros / 1000 - (cfg.keep_s * 1000.0) as i64;
    let over = na + nb + nc - cfg.keep_max;
    // The oldest of all three lists, by the moment they finished. Their
    // items are entries (an id, then the key if any; older versions stored
    // bare ids), passed to purge.lua as stored.
    let mut from: Vec<(String, String, &str)> = Vec::new();
    for (s, head) in FINAL.iter().zip([a, b, c]) {
        for e in head {
            from.push((e.get(..ID_LEN).unwrap_or(&e).to_string(), e, *s));
        }
    }
    let head_ids: Vec<String> = from.iter().map(|(id, _, _)| id.clone()).collect();
    let jobs = read_jobs(&mut *con, keys, &head_ids).await?;
    // An entry whose job is gone (an older `sluice retry` took out only
    // the bare id; a damaged item) would sit at the head for ever, taking a
    // place in every batch: it goes from its own list. Its job cannot come
    // back: ids are never reused, and a job's end writes its record and
    // its entry together.
    let mut orphans = redis::pipe();
    let mut orphaned = 0;
    let mut heads: Vec<(String, String)> = Vec::new();
    let mut ended: Vec<i64> = Vec::new();
    for ((id, entry, s), job) in from.into_iter().zip(jobs) {
        match job {
            Some(j) => {
                heads.push((id, entry));
                ended.push(j.ended_at.unwrap_or(0));
            }
            None => {
                orphans.lrem(keys.idx_status(s), 1, entry);
                orphaned += 1;
            }
        }
    }
    if orphaned > 0 {
        orphans.query_async::<()>(&mut *con).await?;
        tracing::warn!(
            orphaned,
            "status list entries of jobs that are gone removed"
        );
    }
    let mut oldest: Vec<((String, String), i64)> = heads.into_iter().zip(ended).collect();
    oldest.sort_by_key(|(_, t)| *t);
    let chosen: Vec<(String, String)> = oldest
        .into_iter()
        .take(BATCH as usize)
        .enumerate()
        .filter(|(i, (_, ended))| *ended <= cutoff || (*i as i64) < over)
        .map(|(_, (head, _))| head)
        .collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = chosen.iter().map(|(id, _)| id.clone()).collect();
    let specs = read_specs(&mut *con, keys, &ids).await?;
    let mut call = scripts().purge.call_in(keys);
    call.arg(cutoff).arg(cfg.keep_max);
    for ((id, entry), spec) in chosen.iter().zip(specs) {
        call.key(keys.legacy_idx_key(&spec.ckey))
            .key(keys.flow_state(id));
        call.arg(entry);
    }
    call.query(&mut *con).await
}

const FINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];
