//! Acknowledging ended executions. They wait in `Acks` for the next
//! admit.lua call, which records them in the same call that admits the next
//! jobs (one call per turn, not two). When no turn takes them soon (the
//! worker has no room, or is draining), the ack task sends them with ack.lua.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_shared::entry::{Entry, ID_LEN};
use sluice_shared::handoff;
use sluice_shared::partitions::Partitions;
use sluice_shared::redis_conn::Pool;
use sluice_shared::scripts::{scripts, Invocation};
use sluice_shared::Keys;
use tokio::sync::Notify;

use crate::admitted::Outcome;

/// Most messages recorded by one call.
pub const BATCH: usize = 500;

/// How long ended executions wait for a turn to take them along before the
/// ack task sends them itself.
const HANDOFF: Duration = Duration::from_millis(2);

/// Most concurrency keys remembered as binding (see `Acks::bound`): past
/// it the set starts again empty, and relearns the keys still binding.
const MAX_BOUND: usize = 4096;

/// What is recorded.
pub enum AckMsg {
    /// An execution ended.
    Done(Done),
    /// Every execution admitted under this lease key has been reported (sent
    /// after their `Done`s): the key and its lease go.
    LeaseEnded(Arc<str>),
}

/// An execution that ended, to be acknowledged.
pub struct Done {
    /// Whether to declare its key's own keys (see `Admitted::declare_key`).
    pub declare_key: bool,
    pub entry: String,
    pub attempt: u32,
    pub outcome: Outcome,
    /// The first retry's delay, from this worker's config for the job's path.
    pub backoff_ms: u64,
    /// The flow run this job is a step of, or "".
    pub parent: String,
    /// The start in its running state (Unix ms), as admit.lua handed it
    /// over: the scripts check the state against it.
    pub started: i64,
}

/// Messages not recorded yet, oldest first, and how many calls are carrying
/// some. Results may ride on any call, but a lease's end only on a call that
/// no other is in flight beside: a call that fails puts its results back, and
/// a lease must never be ended before a result it covers is recorded.
///
/// An end is recorded by its key's running count alone unless the key binds
/// (its jobs wait, it is paused or overridden) or the job's slot stays held
/// for a window: only then does the script need slots:K and wait:K, and
/// declaring them for every end cost Redis three more strings per end. So an
/// end's key is declared when the job was stamped with a window or was
/// throttled (its pause must go in before the call admits more), or the key
/// is in `bound`: keys that admission asked to declare (keys that bind,
/// and those of delayed entries it times), or that an end
/// needed declared (the script left that end unrecorded, and it is sent
/// again, declared).
#[derive(Default)]
pub struct Acks {
    pending: Mutex<VecDeque<AckMsg>>,
    notify: Notify,
    closed: AtomicBool,
    carriers: AtomicUsize,
    bound: Mutex<HashSet<String>>,
}

impl Acks {
    pub fn push(&self, m: AckMsg) {
        self.pending.lock().unwrap().push_back(m);
        self.notify.notify_one();
    }

    /// Takes up to `max` messages, oldest first (stopping at a lease's end
    /// while another call carries some). A non-empty take must be followed
    /// by `recorded` or `not_recorded`.
    pub fn take(&self, max: usize) -> Vec<AckMsg> {
        let mut q = self.pending.lock().unwrap();
        let alone = self.carriers.load(Ordering::SeqCst) == 0;
        let mut n = 0;
        while n < q.len().min(max) {
            if !alone && matches!(q[n], AckMsg::LeaseEnded(_)) {
                break;
            }
            n += 1;
        }
        if n == 0 {
            return Vec::new();
        }
        self.carriers.fetch_add(1, Ordering::SeqCst);
        q.drain(..n).collect()
    }

    /// The call carrying a take succeeded.
    pub fn recorded(&self) {
        let q = self.pending.lock().unwrap();
        self.carriers.fetch_sub(1, Ordering::SeqCst);
        if !q.is_empty() {
            self.notify.notify_one();
        }
    }

    /// The call carrying `msgs` failed: they go back ahead of newer
    /// messages; a result is never dropped for a Redis hiccup.
    pub fn not_recorded(&self, msgs: Vec<AckMsg>) {
        let mut q = self.pending.lock().unwrap();
        for m in msgs.into_iter().rev() {
            q.push_front(m);
        }
        self.carriers.fetch_sub(1, Ordering::SeqCst);
        drop(q);
        self.notify.notify_one();
    }

    /// The call carrying `msgs` succeeded, except for the ended executions at
    /// `redo` (positions among its `Done`s, from 1), which the script left
    /// unrecorded for want of their key's declaration. They go back ahead of
    /// newer messages, declared from now on, and so do the call's lease
    /// ends, which the script did not record either (a lease goes only with
    /// all its executions). Returns the messages recorded.
    pub fn settle(&self, msgs: Vec<AckMsg>, redo: &[i64]) -> Vec<AckMsg> {
        if redo.is_empty() {
            self.recorded();
            return msgs;
        }
        let (mut done, mut back) = (Vec::new(), Vec::new());
        let mut pos = 0;
        for m in msgs {
            match m {
                AckMsg::Done(mut d) => {
                    pos += 1;
                    if redo.contains(&pos) {
                        self.learn(std::iter::once(Entry::ckey_of(&d.entry)));
                        d.declare_key = true;
                        back.push(AckMsg::Done(d));
                    } else {
                        done.push(AckMsg::Done(d));
                    }
                }
                lease @ AckMsg::LeaseEnded(_) => back.push(lease),
            }
        }
        tracing::debug!(
            again = back.len(),
            "ends sent again with their keys declared"
        );
        self.not_recorded(back);
        done
    }

    /// Keys whose ends are to be declared from now on.
    pub fn learn<'a>(&self, ckeys: impl IntoIterator<Item = &'a str>) {
        let mut bound = self.bound.lock().unwrap();
        for k in ckeys {
            if k.is_empty() || bound.contains(k) {
                continue;
            }
            if bound.len() >= MAX_BOUND {
                bound.clear();
            }
            bound.insert(k.to_string());
        }
    }

    /// No more messages come: the ack task sends what is left and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn is_empty(&self) -> bool {
        self.pending.lock().unwrap().is_empty()
    }
}

/// Carries, after the call that recorded them succeeded, the ends of steps
/// whose flow runs live in other partitions (handoff.rs). In a task of its
/// own: a failure leaves them for a sweep (within 2 s).
pub fn carry_ends(
    pool: &Pool,
    parts: &Arc<Partitions>,
    keys: &Keys,
    msgs: &[AckMsg],
    replicas: u32,
) {
    let fields: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            AckMsg::Done(d) if !d.parent.is_empty() && !keys.holds(&d.parent) => {
                Some(format!("end:{}", d.entry.get(..ID_LEN).unwrap_or(&d.entry)))
            }
            _ => None,
        })
        .collect();
    if fields.is_empty() {
        return;
    }
    let (pool, parts, keys) = (pool.clone(), parts.clone(), keys.clone());
    tokio::spawn(async move {
        let carried = async {
            let mut con = pool.get().await?;
            handoff::carry(&mut *con, &parts, &keys, &fields, replicas).await
        };
        if let Err(e) = carried.await {
            tracing::warn!(error = %e, "carrying step ends to their flow runs failed; a sweep tries again within 2 s");
        }
    });
}

/// Runs until `acks` is closed and everything in it is recorded.
/// With `replicas`, an end counts as recorded once they have it.
pub async fn ack_loop(
    pool: Pool,
    keys: Keys,
    parts: Arc<Partitions>,
    acks: Arc<Acks>,
    replicas: u32,
) {
    // A handle on a multiplexed connection, not the pooled one (see dispatch.rs).
    let mut held: Option<sluice_shared::redis_conn::Connection> = None;
    let mut pause = crate::backoff::FIRST;
    loop {
        let closed = acks.closed.load(Ordering::SeqCst);
        if acks.is_empty() {
            if closed {
                return;
            }
            acks.notify.notified().await;
            continue;
        }
        if !closed {
            tokio::time::sleep(HANDOFF).await;
        }
        let msgs = acks.take(BATCH);
        if msgs.is_empty() {
            // Another call carries some: it tells when it is done.
            acks.notify.notified().await;
            continue;
        }
        match send(&pool, &keys, &acks, &mut held, &msgs, replicas).await {
            Ok((refused, redo)) => {
                let done = acks.settle(msgs, &redo);
                carry_ends(&pool, &parts, &keys, &done, replicas);
                warn_refused(refused);
                pause = crate::backoff::FIRST;
            }
            Err(e) => {
                held = None;
                tracing::warn!(error = %e, pending = msgs.len(), "recording results failed; retrying");
                acks.not_recorded(msgs);
                tokio::time::sleep(pause).await;
                pause = crate::backoff::next(pause);
            }
        }
    }
}

pub fn warn_refused(refused: Vec<String>) {
    for e in refused {
        tracing::warn!(entry = %e, "late result refused: the attempt had been taken over");
    }
}

async fn send(
    pool: &Pool,
    keys: &Keys,
    acks: &Acks,
    held: &mut Option<sluice_shared::redis_conn::Connection>,
    msgs: &[AckMsg],
    replicas: u32,
) -> sluice_shared::Result<(Vec<String>, Vec<i64>)> {
    if held.is_none() {
        *held = Some((*pool.get().await?).clone());
    }
    let con = held.as_mut().expect("connection just set");
    let mut call = scripts().ack.call_in(keys);
    acks.push_section(&mut call, keys, msgs, &[]);
    let timer = std::time::Instant::now();
    // Not replicated is not recorded: sent again, a repeated end is refused
    // harmlessly (its attempt is over).
    call.replicated(replicas);
    let refused = call.query(con).await;
    ::metrics::histogram!(crate::metrics::SCRIPT_SECONDS, "script" => "ack")
        .record(timer.elapsed().as_secs_f64());
    refused
}

impl Acks {
    /// Adds the section acks.lua reads for `msgs`, declaring the concurrency
    /// keys `also` and those of the ends that need theirs (see `Acks`), and
    /// each flow, once: most executions need neither.
    pub fn push_section(
        &self,
        call: &mut Invocation,
        keys: &Keys,
        msgs: &[AckMsg],
        also: &[String],
    ) {
        let bound = self.bound.lock().unwrap();
        push_section(call, keys, msgs, also, &bound);
    }
}

fn push_section(
    call: &mut Invocation,
    keys: &Keys,
    msgs: &[AckMsg],
    also: &[String],
    bound: &HashSet<String>,
) {
    let mut ckeys: Vec<&str> = also.iter().map(String::as_str).collect();
    let mut parents: Vec<&str> = Vec::new();
    let mut leases: Vec<&str> = Vec::new();
    let mut dones: Vec<&Done> = Vec::new();
    for m in msgs {
        match m {
            AckMsg::Done(d) => {
                let ckey = Entry::ckey_of(&d.entry);
                if !ckey.is_empty()
                    && (d.declare_key || bound.contains(ckey))
                    && !ckeys.contains(&ckey)
                {
                    ckeys.push(ckey);
                }
                if !d.parent.is_empty() && !parents.contains(&d.parent.as_str()) {
                    parents.push(&d.parent);
                }
                dones.push(d);
            }
            AckMsg::LeaseEnded(l) => leases.push(l),
        }
    }
    call.arg(ckeys.len());
    for k in &ckeys {
        call.key(keys.slots(k)).key(keys.wait(k)).arg(*k);
    }
    call.arg(parents.len());
    for p in &parents {
        // A run of another partition: the step's end goes to this
        // partition's hand-off hash, and carry_ends takes it there.
        call.key(keys.parent_state(p)).arg(*p);
    }
    call.arg(leases.len());
    for l in &leases {
        call.key(l.to_string());
    }
    call.arg(dones.len());
    for d in dones {
        let (mut outcome, payload) = match &d.outcome {
            Outcome::Ok(v) => ("ok".to_string(), v.to_string()),
            Outcome::Err(e) => (format!("err {}", d.backoff_ms), e.clone()),
            Outcome::Fail(e) => ("fail".to_string(), e.clone()),
            Outcome::Throttle(ms, why) => (format!("throttle {ms}"), why.clone()),
            Outcome::Cancelled => ("cancelled".to_string(), "cancelled by request".to_string()),
            Outcome::Lost | Outcome::Parked => {
                unreachable!("lost attempts and parked flows are never acknowledged")
            }
        };
        if !d.parent.is_empty() {
            outcome += " step";
        }
        call.arg(&d.entry)
            .arg(d.attempt)
            .arg(d.started)
            .arg(outcome)
            .arg(payload);
    }
}
