//! The executions a worker holds, shared by the dispatcher (which starts and
//! acknowledges them) and the lease renewer (which may have to stop them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

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
}

/// Executions keyed by queue entry, and the lease keys they were admitted
/// under with how many of their executions have not been reported yet.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    executions: HashMap<String, Execution>,
    leases: HashMap<Arc<str>, Lease>,
}

/// A lease key's executions not yet reported, and whether one of them was
/// lost: such a lease is never ended by this worker, so that recovery looks
/// at its jobs once it expires.
#[derive(Default)]
struct Lease {
    open: usize,
    lost: bool,
}

impl Running {
    /// Counts `n` executions under `lease`, all of them before any starts:
    /// one that ends at once must not see the lease as finished.
    pub fn add_lease(&self, lease: &Arc<str>, n: usize) {
        // A turn that admitted nothing wrote no lease: nothing to renew.
        if n == 0 {
            return;
        }
        self.0
            .lock()
            .unwrap()
            .leases
            .entry(lease.clone())
            .or_default()
            .open += n;
    }

    pub fn insert(&self, entry: String, attempt: u32) -> watch::Receiver<Option<Stop>> {
        let (tx, rx) = watch::channel(None);
        self.0
            .lock()
            .unwrap()
            .executions
            .insert(entry, Execution { attempt, stop: tx });
        rx
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
        let leases = &mut self.0.lock().unwrap().leases;
        let Some(l) = leases.get_mut(lease) else {
            return false;
        };
        l.lost |= lost;
        l.open = l.open.saturating_sub(1);
        if l.open > 0 {
            return false;
        }
        let lost = l.lost;
        leases.remove(lease);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_ends_once_all_its_executions_are_done_and_none_was_lost() {
        let running = Running::default();
        let (a, b): (Arc<str>, Arc<str>) = ("{p}:lease:w:1".into(), "{p}:lease:w:2".into());
        // A turn that admitted nothing leaves nothing to renew.
        running.add_lease(&a, 0);
        assert!(running.snapshot().1.is_empty());
        running.add_lease(&a, 2);
        running.add_lease(&b, 1);
        assert!(!running.lease_done(&a, false));
        assert!(running.lease_done(&a, false));
        // A lost execution keeps its lease for recovery to find.
        assert!(!running.lease_done(&b, true));
        assert!(running.snapshot().1.is_empty());
    }
}
