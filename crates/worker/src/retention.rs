//! Retention: finished jobs older than `retention.keep_s`, or beyond the
//! newest `retention.keep_max`, are removed with their index entries, oldest
//! first, a batch at a time. Every worker runs it; purge.lua re-checks each job,
//! so workers racing here remove nothing twice.

use std::time::Duration;

use deadpool_redis::Pool;
use sluice_shared::config::RetentionConfig;
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
    }
}

/// One batch: returns how many jobs were removed.
pub async fn purge_once(pool: &Pool, keys: &Keys, cfg: &RetentionConfig) -> Result<usize> {
    let mut con = pool.get().await?;
    let ((secs, micros), card, oldest): ((i64, i64), i64, Vec<(String, f64)>) = redis::pipe()
        .cmd("TIME")
        .zcard(keys.idx_done())
        .zrange_withscores(keys.idx_done(), 0, BATCH - 1)
        .query_async(&mut *con)
        .await?;
    let cutoff = secs * 1000 + micros / 1000 - (cfg.keep_s * 1000.0) as i64;
    let over = card - cfg.keep_max;
    let ids: Vec<String> = oldest
        .into_iter()
        .enumerate()
        .filter(|(i, (_, ended))| *ended as i64 <= cutoff || (*i as i64) < over)
        .map(|(_, (id, _))| id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.hget(keys.job(id), "ckey");
    }
    let ckeys: Vec<Option<String>> = pipe.query_async(&mut *con).await?;
    let mut call = scripts().purge.call();
    for k in keys.finish_indexes() {
        call.key(k);
    }
    call.arg(cutoff).arg(cfg.keep_max);
    for (id, ckey) in ids.iter().zip(ckeys) {
        call.key(keys.job(id))
            .key(keys.args(id))
            .key(keys.idx_key(ckey.as_deref().unwrap_or("")))
            .key(keys.flow_state(id));
        call.arg(id);
    }
    call.query(&mut *con).await
}
