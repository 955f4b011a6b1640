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

/// Keyed by queue entry.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<String, Execution>>>);

impl Running {
    pub fn insert(&self, entry: String, attempt: u32) -> watch::Receiver<Option<Stop>> {
        let (tx, rx) = watch::channel(None);
        self.0
            .lock()
            .unwrap()
            .insert(entry, Execution { attempt, stop: tx });
        rx
    }

    /// Forgets `attempt` of `entry`; a newer attempt of the same job that
    /// this worker took meanwhile stays.
    pub fn remove(&self, entry: &str, attempt: u32) {
        let mut map = self.0.lock().unwrap();
        if map.get(entry).is_some_and(|x| x.attempt == attempt) {
            map.remove(entry);
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (entry, attempt) of every execution, for renewal.
    pub fn snapshot(&self) -> Vec<(String, u32)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(e, x)| (e.clone(), x.attempt))
            .collect()
    }

    /// Stops `attempt` of `entry` if that is what runs now; an execution that
    /// ended meanwhile, or a later attempt of the same job, is left alone.
    pub fn stop(&self, entry: &str, attempt: u32, why: Stop) -> bool {
        match self.0.lock().unwrap().get(entry) {
            Some(x) if x.attempt == attempt => {
                x.stop.send_replace(Some(why));
                true
            }
            _ => false,
        }
    }

    pub fn stop_all(&self, why: Stop) {
        for x in self.0.lock().unwrap().values() {
            x.stop.send_replace(Some(why));
        }
    }
}
