//! The executions a worker holds, shared by the dispatcher (which starts and
//! acknowledges them), the lease renewer and the watchdog (which may have to
//! stop them). Each lease has a local fencing deadline (fence.rs), kept in a
//! slot its commands' supervisors watch too.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

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

/// What an admitted execution gets: its stop signal, and its lease's shared
/// deadline (for the command's supervisor), when there is a slot for it.
pub struct Started {
    pub stop: watch::Receiver<Option<Stop>>,
    pub deadline: Option<&'static AtomicI64>,
}

/// Executions keyed by queue entry, and the lease keys they were admitted
/// under with how many of their executions have not been reported yet.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<Inner>>, Arc<Notify>);

#[derive(Default)]
struct Inner {
    executions: HashMap<String, Execution>,
    leases: HashMap<Arc<str>, Lease>,
}

/// A lease key's executions not yet reported, and whether one of them was
/// lost: such a lease is never ended by this worker, so that recovery looks
/// at its jobs once it expires. A fenced lease is lost as a whole: it is no
/// longer renewed, and its slot keeps the deadline that passed.
struct Lease {
    open: usize,
    lost: bool,
    fenced: bool,
    deadline: i64,
    slot: Option<fence::Slot>,
}

impl Running {
    /// Registers the executions one admission call gave this worker, all
    /// under one lock, before any starts: one that ends at once must not see
    /// the lease as finished, and the watchdog must not fence the lease
    /// between its registration and its executions'. `deadline` is the
    /// admitting call's send time plus the lease, less the margin; if it has
    /// passed already, the executions are stopped before they start.
    pub fn admit(
        &self,
        lease: &Arc<str>,
        deadline: i64,
        now: i64,
        jobs: &[(String, u32)],
    ) -> Vec<Started> {
        // A turn that admitted nothing wrote no lease: nothing to renew.
        if jobs.is_empty() {
            return vec![];
        }
        let mut inner = self.0.lock().unwrap();
        let late = deadline <= now;
        let l = inner.leases.entry(lease.clone()).or_insert_with(|| Lease {
            open: 0,
            lost: late,
            fenced: late,
            deadline,
            slot: fence::Slot::take(deadline),
        });
        l.open += jobs.len();
        let cell = l.slot.as_ref().map(fence::Slot::cell);
        let stopped = l.fenced;
        let mut out = Vec::with_capacity(jobs.len());
        for (entry, attempt) in jobs {
            let (tx, rx) = watch::channel(stopped.then_some(Stop::Lost));
            inner.executions.insert(
                entry.clone(),
                Execution {
                    attempt: *attempt,
                    stop: tx,
                    lease: lease.clone(),
                },
            );
            out.push(Started {
                stop: rx,
                deadline: cell,
            });
        }
        drop(inner);
        // The watchdog sleeps until the earliest deadline it knew of.
        self.1.notify_one();
        out
    }

    /// Resolves after a lease was added (or at once if one was added since
    /// the last call): the watchdog's wake-up.
    pub async fn lease_added(&self) {
        self.1.notified().await
    }

    /// A renewal that covered these leases succeeded: their deadlines move
    /// on to `deadline`. One whose deadline passed before the reply came is
    /// fenced instead: its supervisors may already have killed its commands.
    pub fn renewed(&self, leases: &[String], deadline: i64, now: i64) -> usize {
        let mut inner = self.0.lock().unwrap();
        let mut fenced: Vec<Arc<str>> = Vec::new();
        for name in leases {
            if let Some(l) = inner.leases.get_mut(name.as_str()) {
                if l.fenced {
                    continue;
                }
                if l.deadline <= now {
                    fence_lease(l);
                    fenced.push(name.as_str().into());
                } else if deadline > l.deadline {
                    l.deadline = deadline;
                    if let Some(s) = &l.slot {
                        s.set(deadline);
                    }
                }
            }
        }
        inner.stop_leases(&fenced)
    }

    /// Fences every lease whose local deadline is at or before `now`: Redis
    /// may already have given its jobs to another worker, so its executions
    /// are stopped as lost. Returns how many leases were fenced, and the
    /// earliest deadline still ahead (`fence::NONE` for none).
    pub fn fence_expired(&self, now: i64) -> (usize, i64) {
        let mut inner = self.0.lock().unwrap();
        let mut fenced: Vec<Arc<str>> = Vec::new();
        let mut next = fence::NONE;
        for (name, l) in inner.leases.iter_mut() {
            if l.fenced {
                continue;
            }
            if l.deadline <= now {
                fence_lease(l);
                fenced.push(name.clone());
            } else {
                next = next.min(l.deadline);
            }
        }
        inner.stop_leases(&fenced);
        (fenced.len(), next)
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
        // Its slot goes back to the pool: every command under it has ended,
        // and with it its supervisor.
        inner.leases.remove(lease);
        !lost
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().executions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (entry, attempt) of every execution, and the lease keys to renew
    /// (fenced ones are not: they are left to expire and be recovered).
    pub fn snapshot(&self) -> (Vec<(String, u32)>, Vec<String>) {
        let inner = self.0.lock().unwrap();
        (
            inner
                .executions
                .iter()
                .map(|(e, x)| (e.clone(), x.attempt))
                .collect(),
            inner
                .leases
                .iter()
                .filter(|(_, l)| !l.fenced)
                .map(|(k, _)| k.to_string())
                .collect(),
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

/// Marks a lease fenced; its slot keeps the deadline that passed, so its
/// supervisors and its commands see it as passed.
fn fence_lease(l: &mut Lease) {
    l.fenced = true;
    l.lost = true;
}

impl Inner {
    /// Stops, as lost, every execution of these leases; returns how many
    /// leases there were.
    fn stop_leases(&self, leases: &[Arc<str>]) -> usize {
        if !leases.is_empty() {
            for x in self.executions.values() {
                if leases.contains(&x.lease) {
                    x.stop.send_replace(Some(Stop::Lost));
                }
            }
        }
        leases.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(names: &[&str]) -> Vec<(String, u32)> {
        names.iter().map(|n| (n.to_string(), 1)).collect()
    }

    #[test]
    fn a_lease_ends_once_all_its_executions_are_done_and_none_was_lost() {
        let running = Running::default();
        let (a, b): (Arc<str>, Arc<str>) = ("{p}:lease:w:1".into(), "{p}:lease:w:2".into());
        // A turn that admitted nothing leaves nothing to renew.
        running.admit(&a, 10, 0, &[]);
        assert!(running.snapshot().1.is_empty());
        running.admit(&a, 10, 0, &jobs(&["x", "y"]));
        running.admit(&b, 10, 0, &jobs(&["z"]));
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
        let ra = running.admit(&a, 100, 0, &jobs(&["ja"])).remove(0);
        let rb = running.admit(&b, 200, 0, &jobs(&["jb"])).remove(0);
        // A renewal moves a on; then time passes a's deadline only.
        assert_eq!(running.renewed(&["{p}:lease:w:1".to_string()], 150, 50), 0);
        assert_eq!(running.fence_expired(149), (0, 150));
        assert_eq!(running.fence_expired(150), (1, 200));
        assert_eq!(*ra.stop.borrow(), Some(Stop::Lost));
        assert_eq!(*rb.stop.borrow(), None);
        // A fenced lease is not renewed back to life, nor renewed at all,
        // and never ended.
        assert_eq!(running.renewed(&["{p}:lease:w:1".to_string()], 500, 160), 0);
        assert_eq!(running.snapshot().1, vec!["{p}:lease:w:2".to_string()]);
        assert!(!running.lease_done(&a, false));
        // A renewal whose reply comes after the deadline fences, not extends.
        assert_eq!(running.renewed(&["{p}:lease:w:2".to_string()], 900, 200), 1);
        assert_eq!(*rb.stop.borrow(), Some(Stop::Lost));
        assert_eq!(running.fence_expired(300), (0, fence::NONE));
    }

    #[test]
    fn jobs_admitted_after_their_deadline_never_start() {
        let running = Running::default();
        let a: Arc<str> = "{p}:lease:w:1".into();
        let started = running.admit(&a, 100, 100, &jobs(&["x"]));
        assert_eq!(*started[0].stop.borrow(), Some(Stop::Lost));
        assert!(running.snapshot().1.is_empty());
    }
}
