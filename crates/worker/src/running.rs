//! The executions a worker holds, shared by the dispatcher (which starts and
//! acknowledges them) and the lease renewer (which may have to stop them).
//! Each lease has a local deadline (fence.rs); the earliest one is published
//! to the supervisors whenever it changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::fence;

/// Why an execution is stopped before it ends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `sluice cancel`: report it cancelled.
    Cancelled,
    /// The lease was lost: the attempt is no longer ours, report nothing.
    Lost,
    /// The worker's grace period ran out while shutting down.
    Shutdown,
}

pub struct Execution {
    pub attempt: u32,
    pub stop: watch::Sender<Option<Stop>>,
    /// The lease it was admitted under.
    pub lease: Arc<str>,
}

/// Executions keyed by queue entry, and the lease keys they were admitted
/// under with how many of their executions have not been reported yet.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<Inner>>, Arc<tokio::sync::Notify>);

#[derive(Default)]
struct Inner {
    executions: HashMap<String, Execution>,
    leases: HashMap<Arc<str>, Lease>,
}

/// A lease key's executions not yet reported, and whether one of them was
/// lost: such a lease is never ended by this worker, so that recovery looks
/// at its jobs once it expires. `deadline` is its local fencing deadline
/// (fence.rs), `fence::NONE` once fenced.
struct Lease {
    open: usize,
    lost: bool,
    deadline: i64,
}

impl Running {
    /// Counts `n` executions under `lease`, all of them before any starts:
    /// one that ends at once must not see the lease as finished. `deadline`
    /// is its local fencing deadline: the admitting call's send time plus
    /// the lease, less the margin.
    pub fn add_lease(&self, lease: &Arc<str>, n: usize, deadline: i64) {
        // A turn that admitted nothing wrote no lease: nothing to renew.
        if n == 0 {
            return;
        }
        let mut inner = self.0.lock().unwrap();
        let l = inner.leases.entry(lease.clone()).or_insert(Lease {
            open: 0,
            lost: false,
            deadline,
        });
        l.open += n;
        inner.publish();
        // The watchdog sleeps until the earliest deadline it knew of.
        self.1.notify_one();
    }

    /// Resolves after a lease was added (or at once if one was added since
    /// the last call): the watchdog's wake-up when it had no deadline.
    pub async fn lease_added(&self) {
        self.1.notified().await
    }

    pub fn insert(
        &self,
        entry: String,
        attempt: u32,
        lease: &Arc<str>,
    ) -> watch::Receiver<Option<Stop>> {
        let (tx, rx) = watch::channel(None);
        self.0.lock().unwrap().executions.insert(
            entry,
            Execution {
                attempt,
                stop: tx,
                lease: lease.clone(),
            },
        );
        rx
    }

    /// A renewal sent at `sent_ns` succeeded for these leases: their local
    /// deadlines move on. A lease already fenced stays fenced.
    pub fn renewed(&self, leases: &[String], deadline: i64) {
        let mut inner = self.0.lock().unwrap();
        for name in leases {
            if let Some(l) = inner.leases.get_mut(name.as_str()) {
                if l.deadline != fence::NONE {
                    l.deadline = l.deadline.max(deadline);
                }
            }
        }
        inner.publish();
    }

    /// Stops, as lost, every execution of a lease whose local deadline is
    /// at or before `now`: Redis may already have given its jobs to another
    /// worker. Returns how many executions were stopped, and the earliest
    /// deadline still ahead (`fence::NONE` for none).
    pub fn fence_expired(&self, now: i64) -> (usize, i64) {
        let mut inner = self.0.lock().unwrap();
        let mut fenced: Vec<Arc<str>> = Vec::new();
        for (name, l) in inner.leases.iter_mut() {
            if l.deadline <= now {
                l.deadline = fence::NONE;
                l.lost = true;
                fenced.push(name.clone());
            }
        }
        let mut stopped = 0;
        if !fenced.is_empty() {
            for x in inner.executions.values() {
                if fenced.contains(&x.lease) {
                    x.stop.send_replace(Some(Stop::Lost));
                    stopped += 1;
                }
            }
        }
        (stopped, inner.publish())
    }

    /// Forgets `attempt` of `entry`; a newer attempt of the same job that
    /// this worker took meanwhile stays.
    pub fn remove(&self, entry: &str, attempt: u32) {
        let map = &mut self.0.lock().unwrap().executions;
        if map.get(entry).is_some_and(|x| x.attempt == attempt) {
            map.remove(entry);
        }
    }

    /// One execution of `lease` is over and its result queued (`lost`: it
    /// has none, the attempt was taken from us). True when it was the last
    /// and none was lost: the lease can go once the results are recorded.
    pub fn lease_done(&self, lease: &Arc<str>, lost: bool) -> bool {
        let mut inner = self.0.lock().unwrap();
        let Some(l) = inner.leases.get_mut(lease) else {
            return false;
        };
        l.lost |= lost;
        l.open = l.open.saturating_sub(1);
        if l.open > 0 {
            return false;
        }
        let lost = l.lost;
        inner.leases.remove(lease);
        inner.publish();
        !lost
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().executions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (entry, attempt) of every execution, and the lease keys held, for renewal.
    pub fn snapshot(&self) -> (Vec<(String, u32)>, Vec<String>) {
        let inner = self.0.lock().unwrap();
        (
            inner
                .executions
                .iter()
                .map(|(e, x)| (e.clone(), x.attempt))
                .collect(),
            inner.leases.keys().map(|k| k.to_string()).collect(),
        )
    }

    /// Stops `attempt` of `entry` if that is what runs now; an execution that
    /// ended meanwhile, or a later attempt of the same job, is left alone.
    pub fn stop(&self, entry: &str, attempt: u32, why: Stop) -> bool {
        match self.0.lock().unwrap().executions.get(entry) {
            Some(x) if x.attempt == attempt => {
                x.stop.send_replace(Some(why));
                true
            }
            _ => false,
        }
    }

    pub fn stop_all(&self, why: Stop) {
        for x in self.0.lock().unwrap().executions.values() {
            x.stop.send_replace(Some(why));
        }
    }
}

impl Inner {
    /// Publishes the earliest local deadline to the supervisors, and
    /// returns it.
    fn publish(&self) -> i64 {
        let earliest = self
            .leases
            .values()
            .map(|l| l.deadline)
            .min()
            .unwrap_or(fence::NONE);
        fence::shared().store(earliest, std::sync::atomic::Ordering::SeqCst);
        earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_ends_once_all_its_executions_are_done_and_none_was_lost() {
        let running = Running::default();
        let (a, b): (Arc<str>, Arc<str>) = ("{p}:lease:w:1".into(), "{p}:lease:w:2".into());
        // A turn that admitted nothing leaves nothing to renew.
        running.add_lease(&a, 0, 10);
        assert!(running.snapshot().1.is_empty());
        running.add_lease(&a, 2, 10);
        running.add_lease(&b, 1, 10);
        assert!(!running.lease_done(&a, false));
        assert!(running.lease_done(&a, false));
        // A lost execution keeps its lease for recovery to find.
        assert!(!running.lease_done(&b, true));
        assert!(running.snapshot().1.is_empty());
    }

    #[test]
    fn a_lease_past_its_local_deadline_stops_its_executions_only() {
        let running = Running::default();
        let (a, b): (Arc<str>, Arc<str>) = ("{p}:lease:w:1".into(), "{p}:lease:w:2".into());
        running.add_lease(&a, 1, 100);
        running.add_lease(&b, 1, 200);
        let ra = running.insert("ja".into(), 1, &a);
        let rb = running.insert("jb".into(), 1, &b);
        assert_eq!(
            fence::shared().load(std::sync::atomic::Ordering::SeqCst),
            100
        );
        // A renewal moves both on; then time passes a's deadline only.
        running.renewed(&["{p}:lease:w:1".to_string()], 150);
        assert_eq!(running.fence_expired(149), (0, 150));
        assert_eq!(running.fence_expired(150), (1, 200));
        assert_eq!(*ra.borrow(), Some(Stop::Lost));
        assert_eq!(*rb.borrow(), None);
        // A fenced lease is never renewed back to life, and never ended.
        running.renewed(&["{p}:lease:w:1".to_string()], 500);
        assert_eq!(running.fence_expired(300), (1, fence::NONE));
        assert!(!running.lease_done(&a, false));
    }
}
