//! Idle workers block on the marker lists of their tags instead of polling:
//! the scripts push a token on a tag's marker when there is work of that tag
//! (flush_queues in queues.lua), and one blocked worker of the tag takes it.
//! The BLPOP runs on a connection of its own with no response timeout.

use std::sync::Arc;
use std::time::Duration;

use sluice_shared::{redis_conn, Keys};
use tokio::sync::{watch, Notify};

/// A blocked BLPOP also returns after this long, as a safety net for a token
/// lost with a crashed worker (each costs a BLPOP and an admit call while idle).
/// Dead workers' leases do not depend on it: workers keep a timer for those.
const SAFETY_WAKE: Duration = Duration::from_secs(30);

pub async fn listen(
    target: redis_conn::Target,
    keys: Keys,
    mut listening: watch::Receiver<bool>,
    wake: Arc<Notify>,
) {
    let mut backoff = crate::backoff::FIRST;
    loop {
        let mut con = match redis_conn::blocking_connection(&target).await {
            Ok(c) => {
                backoff = crate::backoff::FIRST;
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect for wake-ups; retrying");
                tokio::time::sleep(backoff).await;
                backoff = crate::backoff::next(backoff);
                continue;
            }
        };
        loop {
            // Only a worker with room for work takes a token.
            if listening.wait_for(|l| *l).await.is_err() {
                return;
            }
            sluice_shared::scripts::count_round_trip();
            let markers: Vec<String> = keys.own_tags().iter().map(|t| keys.marker(t)).collect();
            let got: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP")
                .arg(&markers)
                .arg(SAFETY_WAKE.as_secs())
                .query_async(&mut con)
                .await;
            match got {
                Ok(token) => {
                    if let Some((marker, _)) = token.filter(|_| !*listening.borrow()) {
                        // Filled up meanwhile: hand the token on to another worker.
                        let _: redis::RedisResult<()> = redis::cmd("LPUSH")
                            .arg(marker)
                            .arg("1")
                            .query_async(&mut con)
                            .await;
                    }
                    wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up connection lost; reconnecting");
                    wake.notify_one();
                    break;
                }
            }
        }
    }
}
