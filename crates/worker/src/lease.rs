//! Lease renewal: while a worker runs executions it extends their leases, and
//! stops those it no longer owns. If Redis cannot be reached for a whole
//! lease, every attempt is presumed taken over and stopped (fencing).

use std::time::{Duration, Instant};

use deadpool_redis::Pool;
use sluice_shared::scripts::scripts;
use sluice_shared::Keys;

use crate::running::{Running, Stop};

pub async fn renew_loop(pool: Pool, keys: Keys, running: Running, lease: Duration) {
    // Often enough to survive two missed renewals, and to see a cancel request
    // within two seconds.
    let every = (lease / 3).min(Duration::from_secs(2));
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (held, leases) = running.snapshot();
        if held.is_empty() && leases.is_empty() {
            last_ok = Instant::now();
            continue;
        }
        match renew(&pool, &keys, &held, &leases, lease).await {
            Ok((lost, cancel)) => {
                last_ok = Instant::now();
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
                if last_ok.elapsed() >= lease {
                    tracing::error!("no renewal for a whole lease: stopping every running attempt");
                    running.stop_all(Stop::Lost);
                }
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
) -> sluice_shared::Result<(Vec<String>, Vec<String>)> {
    let mut call = scripts().renew.call_in(keys);
    call.arg(lease.as_millis() as u64).arg(leases.len());
    for l in leases {
        call.arg(l);
    }
    for (entry, attempt) in held {
        call.arg(entry).arg(*attempt);
    }
    let mut con = pool.get().await?;
    call.query(&mut *con).await
}
