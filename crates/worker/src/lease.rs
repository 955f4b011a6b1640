//! Leases: while a worker runs executions it extends their leases in Redis,
//! and stops those it no longer owns (lost, or asked to cancel). A watchdog
//! stops every execution of a lease whose local deadline passed (fence.rs),
//! whether or not a Redis call ever returns.

use std::time::Duration;

use sluice_shared::redis_conn::Pool;
use sluice_shared::scripts::scripts;
use sluice_shared::Keys;

use crate::fence;
use crate::running::{Running, Stop};

/// With `replicas`, a renewal counts only once they have it: a failover
/// must not bring back an older deadline than the one this worker keeps.
pub async fn renew_loop(pool: Pool, keys: Keys, running: Running, lease: Duration, replicas: u32) {
    // Every third of the lease (the deadline is at four fifths of it, or
    // less the 2 s margin): a late or lost renewal is survived; and a cancel
    // request is seen within two seconds.
    let every = (lease / 3).min(Duration::from_secs(2));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (held, leases) = running.snapshot();
        if held.is_empty() && leases.is_empty() {
            continue;
        }
        // The send time, taken before the call: the script runs after it,
        // so the lease's Redis deadline is later than this plus the lease.
        let sent = fence::now_ns();
        match renew(&pool, &keys, &held, &leases, lease, replicas).await {
            Ok((lost, cancel)) => {
                let late =
                    running.renewed(&leases, fence::deadline_after(sent, lease), fence::now_ns());
                if late > 0 {
                    tracing::error!(leases = late, "a lease renewal came back after the local deadline: stopping those attempts");
                }
                ::metrics::counter!(crate::metrics::RENEWALS).increment(held.len() as u64);
                // An execution that ended after the snapshot reads as lost
                // here; only one still running is.
                let attempt_of = |e: &str| {
                    held.iter()
                        .find(|(x, _)| x == e)
                        .map(|(_, a)| *a)
                        .unwrap_or(0)
                };
                for e in lost {
                    if running.stop(&e, attempt_of(&e), Stop::Lost) {
                        ::metrics::counter!(crate::metrics::LEASES_LOST).increment(1);
                        tracing::warn!(entry = %e, "lease lost: stopping the attempt");
                    }
                }
                for e in cancel {
                    running.stop(&e, attempt_of(&e), Stop::Cancelled);
                }
            }
            Err(e) => {
                ::metrics::counter!(crate::metrics::RENEWAL_FAILURES).increment(1);
                tracing::warn!(error = %e, "lease renewal failed");
            }
        }
    }
}

/// Stops the executions of every lease whose local deadline passed, at that
/// moment: a timer of this process, not a reply from Redis.
pub async fn watchdog(running: Running) {
    loop {
        let now = fence::now_ns();
        let (fenced, next) = running.fence_expired(now);
        if fenced > 0 {
            ::metrics::counter!(crate::metrics::LEASES_LOST).increment(fenced as u64);
            tracing::error!(
                leases = fenced,
                "no lease renewal reached Redis in time: stopping those attempts before another worker may take them over"
            );
        }
        if next == fence::NONE {
            running.lease_added().await;
        } else {
            let wait = Duration::from_nanos((next - now).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = running.lease_added() => {}
            }
        }
    }
}

async fn renew(
    pool: &Pool,
    keys: &Keys,
    held: &[(String, u32)],
    leases: &[String],
    lease: Duration,
    replicas: u32,
) -> sluice_shared::Result<(Vec<String>, Vec<String>)> {
    let mut call = scripts().renew.call_in(keys);
    call.arg(lease.as_millis() as u64).arg(leases.len());
    for l in leases {
        call.arg(l);
    }
    for (entry, attempt) in held {
        call.arg(entry).arg(*attempt);
    }
    call.replicated(replicas);
    let mut con = pool.get().await?;
    call.query(&mut *con).await
}
