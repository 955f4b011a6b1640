//! Retention: finished jobs that ended more than `retention.keep_s` ago, or
//! beyond the newest `retention.keep_max`, are removed with their index entries, oldest
//! first, a batch at a time. Every worker runs it; purge.lua re-checks each job,
//! so workers racing here remove nothing twice. Each pass also prunes the
//! registry of concurrency keys of those that hold and wait for nothing.

use std::time::Duration;

use sluice_shared::config::RetentionConfig;
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

/// Walks the registry of concurrency keys, a page at a time, and removes
/// those that hold nothing and have nothing waiting (prune_limits.lua).
pub async fn prune_limits(pool: &Pool, keys: &Keys) -> Result<usize> {
    let mut con = pool.get().await?;
    let mut cursor: u64 = 0;
    let mut pruned = 0;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(keys.limits())
            .arg(cursor)
            .arg("COUNT")
            .arg(200)
            .query_async(&mut *con)
            .await?;
        // HSCAN pages are field, value, field, value...
        // Limits set at run time stay, idle or not.
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
            return Ok(pruned);
        }
        cursor = next;
    }
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
    // The oldest of all three lists, by the moment they finished.
    let heads: Vec<String> = [a, b, c].concat();
    let ended: Vec<i64> = read_jobs(&mut *con, keys, &heads)
        .await?
        .iter()
        .map(|j| j.as_ref().and_then(|j| j.ended_at).unwrap_or(0))
        .collect();
    let mut oldest: Vec<(String, i64)> = heads.into_iter().zip(ended).collect();
    oldest.sort_by_key(|(_, t)| *t);
    let ids: Vec<String> = oldest
        .into_iter()
        .take(BATCH as usize)
        .enumerate()
        .filter(|(i, (_, ended))| *ended <= cutoff || (*i as i64) < over)
        .map(|(_, (id, _))| id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let specs = read_specs(&mut *con, keys, &ids).await?;
    let mut call = scripts().purge.call_in(keys);
    call.arg(cutoff).arg(cfg.keep_max);
    for (id, spec) in ids.iter().zip(specs) {
        call.key(keys.legacy_idx_key(&spec.ckey))
            .key(keys.flow_state(id));
        call.arg(id);
    }
    call.query(&mut *con).await
}

const FINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];
