//! Pauses between tries while Redis cannot be reached: doubling from the
//! first, up to the last. A try costs one connection attempt; the cap keeps
//! the time from Redis's return to work resuming well under a second. The
//! dispatcher, the acker and the wake-up listener all use it.

use std::time::Duration;

pub const FIRST: Duration = Duration::from_millis(50);
pub const MAX: Duration = Duration::from_millis(250);

/// The pause after `pause`.
pub fn next(pause: Duration) -> Duration {
    (pause * 2).min(MAX)
}
