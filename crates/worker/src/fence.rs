//! The worker's fencing deadline: the moment after which its leases may have
//! run out in Redis, so that another worker may take its jobs over.
//!
//! Redis sets a lease's deadline to (Redis time when the script ran) + lease.
//! The worker cannot read Redis's clock, but it knows when it *sent* the call
//! that set or renewed the lease, by its own clock, and the script ran after
//! that. So `send time + lease - margin` by the local clock comes before the
//! Redis deadline, as long as the two clocks advance at nearly the same rate
//! over one lease; the margin covers that difference, the time a kill takes,
//! and a late timer. See the README's "Fencing" section for the argument.
//!
//! The clock is CLOCK_BOOTTIME: monotonic (a wall-clock step does not move
//! it) and still counting while the machine is suspended, so a laptop or VM
//! that wakes up past its deadline fences at once.
//!
//! The deadline lives in a page of memory shared with every supervisor
//! process (see supervise.rs), so that a command is killed at the deadline
//! even if the worker itself is frozen (SIGSTOP) and cannot act.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// No deadline: nothing is held.
pub const NONE: i64 = i64::MAX;

/// Nanoseconds on CLOCK_BOOTTIME. Async-signal-safe: supervisors call it.
pub fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_BOOTTIME
    // exists on every Linux this runs on (2.6.39+).
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts)
    };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// What the local deadline keeps back from the lease: a fifth of it, at least
/// 100 ms and at most 2 s. Renewals go every third of the lease (2 s at most),
/// so a healthy worker is far from its deadline.
pub fn margin(lease: Duration) -> Duration {
    (lease / 5).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// The local deadline of a lease whose setting or renewal call was sent at
/// `sent_ns`.
pub fn deadline_after(sent_ns: i64, lease: Duration) -> i64 {
    sent_ns.saturating_add((lease - margin(lease)).as_nanos() as i64)
}

/// The shared deadline: the earliest local deadline of the worker's leases,
/// or [`NONE`].
pub fn shared() -> &'static AtomicI64 {
    static CELL: OnceLock<&'static AtomicI64> = OnceLock::new();
    CELL.get_or_init(|| {
        // SAFETY: an anonymous shared mapping of one page, never unmapped,
        // so the reference lives as long as the process; a page is aligned
        // for an AtomicI64, and zeroed memory is a valid one (set to NONE
        // at once). MAP_SHARED makes forked supervisors see later stores.
        #[allow(unsafe_code)]
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert!(p != libc::MAP_FAILED, "mmap of the fence page failed");
            let cell = &*(p as *const AtomicI64);
            cell.store(NONE, Ordering::SeqCst);
            cell
        }
    })
}

/// Whether the shared deadline has passed.
pub fn passed() -> bool {
    now_ns() >= shared().load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_deadline_comes_a_margin_before_the_lease_ends() {
        let l = Duration::from_secs(30);
        assert_eq!(margin(l), Duration::from_secs(2));
        assert_eq!(deadline_after(0, l), 28_000_000_000);
        assert_eq!(margin(Duration::from_secs(1)), Duration::from_millis(200));
        assert_eq!(
            margin(Duration::from_millis(300)),
            Duration::from_millis(100)
        );
        assert!(now_ns() > 0);
    }
}
