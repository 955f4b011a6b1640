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
//! Each lease's deadline lives in a slot of memory shared with the
//! supervisor processes of its commands (see supervise.rs), so that a
//! command is killed at its lease's deadline even if the worker itself is
//! frozen (SIGSTOP) and cannot act. A fenced lease keeps its past deadline
//! in its slot; a slot goes back to the pool when its lease is gone, which
//! is after every supervisor watching it has exited.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// No deadline.
pub const NONE: i64 = i64::MAX;

/// Slots in the shared region: more than the leases any process holds (a
/// lease holds at least one execution, and a worker at most 1,000).
const SLOTS: usize = 8192;

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
/// 100 ms and at most 2 s. Renewals go every third of the lease (2 s at
/// most), so a healthy worker is at least a renewal away from its deadline.
pub fn margin(lease: Duration) -> Duration {
    (lease / 5).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// The local deadline of a lease whose setting or renewal call was sent at
/// `sent_ns`.
pub fn deadline_after(sent_ns: i64, lease: Duration) -> i64 {
    sent_ns.saturating_add(lease.saturating_sub(margin(lease)).as_nanos() as i64)
}

/// The shared region and its free slots.
struct Region {
    cells: &'static [AtomicI64],
    free: Mutex<Vec<usize>>,
}

static REGION: OnceLock<Region> = OnceLock::new();

/// Maps the shared region; called once when a worker starts, before any
/// command is spawned, so that a failure is an error at start, not a panic
/// in a job.
pub fn init() -> std::io::Result<()> {
    if REGION.get().is_some() {
        return Ok(());
    }
    let bytes = SLOTS * std::mem::size_of::<AtomicI64>();
    // SAFETY: an anonymous shared mapping, never unmapped, so the slice lives
    // as long as the process; pages are aligned for AtomicI64, and zeroed
    // memory is a valid AtomicI64 (each is set before use). MAP_SHARED makes
    // forked supervisors see later stores.
    #[allow(unsafe_code)]
    let cells = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        std::slice::from_raw_parts(p as *const AtomicI64, SLOTS)
    };
    let _ = REGION.set(Region {
        cells,
        free: Mutex::new((0..SLOTS).rev().collect()),
    });
    Ok(())
}

/// One lease's deadline, shared with its commands' supervisors.
pub struct Slot {
    index: usize,
    cell: &'static AtomicI64,
}

impl Slot {
    /// A free slot set to `deadline`; `None` when the region is not mapped
    /// or full (the worker's watchdog still fences; only a frozen worker's
    /// commands then go unfenced).
    pub fn take(deadline: i64) -> Option<Slot> {
        let region = REGION.get()?;
        let index = region.free.lock().unwrap().pop()?;
        let cell = &region.cells[index];
        cell.store(deadline, Ordering::SeqCst);
        Some(Slot { index, cell })
    }

    pub fn set(&self, deadline: i64) {
        self.cell.store(deadline, Ordering::SeqCst);
    }

    /// The cell, for a supervisor to watch and a command to consult.
    pub fn cell(&self) -> &'static AtomicI64 {
        self.cell
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.cell.store(NONE, Ordering::SeqCst);
        if let Some(region) = REGION.get() {
            region.free.lock().unwrap().push(self.index);
        }
    }
}

/// Whether the deadline in `cell` has passed.
pub fn passed(cell: &AtomicI64) -> bool {
    now_ns() >= cell.load(Ordering::SeqCst)
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
