//! The worker's fetch loop. Each turn is one round trip to Redis, admit.lua,
//! which takes and admits as many entries as there is room for; a second one
//! only when it reports expired leases to recover (recover.lua) or
//! concurrency keys to declare before their jobs can be taken.
//!
//! Ended executions are recorded by the ack task meanwhile (see ack.rs).
//! Between turns the loop sleeps until an execution ends, a wake-up token
//! arrives, the next delayed entry or lease deadline falls due, or shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use redis::Value;
use sluice_shared::entry::{Entry, ID_LEN};
use sluice_shared::error::Result;
use sluice_shared::handoff;
use sluice_shared::partitions::Partitions;
use sluice_shared::records::read_specs;
use sluice_shared::redis_conn::Connection;
use sluice_shared::redis_conn::Pool;
use sluice_shared::scripts::scripts;
use sluice_shared::{redis_conn, Config, Keys};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::ack::{ack_loop, warn_refused, AckMsg, Acks, Done};
use crate::admitted::{Admitted, Outcome};
use crate::context::Shared;
use crate::execute::execute;
use crate::handler::Handler;
use crate::running::{Running, Stop};
use crate::{backoff, lease, metrics, retention, wake};

struct Dispatcher {
    shared: Arc<Shared>,
    keys: Keys,
    pool: Pool,
    running: Running,
    acks: Arc<Acks>,
    /// Told whenever an execution ends: there is room again.
    freed: Arc<Notify>,
    lease_ms: u64,
    /// Replicas each admission must reach before its jobs start.
    replicas: u32,
    /// The tags this worker serves, as admit.lua takes them.
    served: String,
    /// Names this worker's lease keys: `<worker id>:<n>`.
    worker_id: String,
    batches: std::sync::atomic::AtomicU64,
    /// The worker's room, shared with its other partitions' loops.
    room: Arc<Room>,
    /// This loop's partition.
    part: usize,
}

/// Most executions one recover.lua call looks at.
const RECOVER_LINES: usize = 1000;

/// Turns a worker has in flight at most.
const TURNS_IN_FLIGHT: usize = 2;

/// What one turn learned.
struct Turn {
    /// Concurrency keys to declare next turn (see admit.lua).
    need: Vec<String>,
    more: bool,
    next_in: Option<Duration>,
}

pub async fn run<S: Future<Output = ()> + Send>(
    config: Config,
    handlers: HashMap<String, Arc<dyn Handler>>,
    export: crate::MetricsExport,
    shutdown: S,
) -> Result<()> {
    let concurrency = config.worker.concurrency as usize;
    // The supervisors' lifeline and shared deadlines, before any command.
    crate::fence::init()
        .and_then(|()| crate::supervise::init())
        .map_err(|e| {
            sluice_shared::Error::Config(format!("cannot set up command supervision: {e}"))
        })?;
    let target = config.redis_target();
    let pool = redis_conn::pool(&target, 4)?;
    redis_conn::ping(&pool, &target).await?;
    redis_conn::check_eviction(&pool).await;
    scripts().load_all(&mut *pool.get().await?).await?;
    let parts = Arc::new(Partitions::new(&config.prefix, config.partitions as usize));
    parts.check(&mut *pool.get().await?, true).await?;
    for keys in parts.all() {
        // The worker's tags are registered before its first call, and again
        // whenever it reads the registry (a namespace flushed by hand).
        keys.set_own_tags(config.worker.tags.clone());
        sluice_shared::tags::refresh(keys, &mut *pool.get().await?, &[]).await?;
    }
    crate::routing::warn_unrunnable(&config, &handlers);
    let runnings: Vec<Running> = parts.all().iter().map(|_| Running::default()).collect();
    // Before any task starts: a metrics port that is taken fails the start
    // with nothing left running.
    let mut metrics_server = None;
    if let Some(addr) = &config.worker.metrics_addr {
        let addr = addr
            .parse()
            .map_err(|e| sluice_shared::Error::Config(format!("worker.metrics_addr: {e}")))?;
        metrics_server = Some(
            metrics::serve(
                addr,
                export,
                pool.clone(),
                parts.all().to_vec(),
                runnings.clone(),
            )
            .await?,
        );
    }
    tracing::info!(prefix = %config.prefix, concurrency, handlers = handlers.len(), tags = ?config.worker.tags, partitions = parts.count(), "worker started");
    let room = Arc::new(Room::new(concurrency, runnings.clone()));
    let config = Arc::new(config);
    let handlers = Arc::new(handlers);
    let worker_id = uuid::Uuid::now_v7().simple().to_string();
    // Every partition has a loop of its own, sharing the worker's room.
    let (stop_tx, stop_rx) = watch::channel(false);
    let loops: Vec<_> = parts
        .all()
        .iter()
        .zip(runnings)
        .enumerate()
        .map(|(part, (keys, running))| {
            let d = Dispatcher {
                lease_ms: config.lease_ms(),
                replicas: config.replicas(),
                served: config.worker.tags.join(" "),
                shared: Arc::new(Shared {
                    config: config.clone(),
                    handlers: handlers.clone(),
                    keys: keys.clone(),
                    pool: pool.clone(),
                    parts: parts.clone(),
                }),
                keys: keys.clone(),
                pool: pool.clone(),
                running,
                acks: Arc::new(Acks::default()),
                freed: Arc::new(Notify::new()),
                room: room.clone(),
                part,
                worker_id: worker_id.clone(),
                batches: Default::default(),
            };
            tokio::spawn(serve(d, target.clone(), stop_rx.clone()))
        })
        .collect();
    shutdown.await;
    stop_tx.send_replace(true);
    for l in loops {
        if let Err(e) = l.await {
            tracing::error!(error = %e, "a partition's loop ended abnormally");
        }
    }
    // An embedding service may start another worker in the same process.
    if let Some(m) = metrics_server {
        m.abort();
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// The worker's room for executions, shared by its partitions' loops: each
/// claims from it before a turn, under a lock, so that together they never
/// start more than `concurrency`.
struct Room {
    concurrency: usize,
    running: Vec<Running>,
    reserved: std::sync::Mutex<usize>,
    /// Per partition: how to tell its loop that room may be back.
    recheck: Vec<Notify>,
}

impl Room {
    fn new(concurrency: usize, running: Vec<Running>) -> Room {
        Room {
            concurrency,
            recheck: running.iter().map(|_| Notify::new()).collect(),
            running,
            reserved: Default::default(),
        }
    }

    fn free_locked(&self, reserved: usize) -> usize {
        let running: usize = self.running.iter().map(Running::len).sum();
        self.concurrency.saturating_sub(running + reserved)
    }

    /// Room not running and not claimed by a turn in flight.
    fn free(&self) -> usize {
        let reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        self.free_locked(*reserved)
    }

    /// Claims up to `want` of the room; what it got.
    fn claim(&self, want: usize) -> usize {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let got = want.min(self.free_locked(*reserved));
        *reserved += got;
        got
    }

    /// Gives back a turn's claim (its jobs now count as running, and what
    /// it did not use is free again): partition `part`'s turn.
    fn release(&self, part: usize, claimed: usize) {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        *reserved = reserved.saturating_sub(claimed);
        drop(reserved);
        if claimed > 0 {
            self.others_look(part);
        }
    }

    /// An execution of partition `part` ended (its own loop hears of it
    /// through `freed`).
    fn ended(&self, part: usize) {
        self.others_look(part);
    }

    /// Room may be back: every other loop looks again. A loop that sat
    /// without room neither claimed nor listened for wake-ups, and its turn
    /// may be due; a Notify keeps the permit, so a loop busy at this moment
    /// looks once it is done. A look costs Redis nothing unless the loop
    /// wants to claim.
    fn others_look(&self, part: usize) {
        for (q, n) in self.recheck.iter().enumerate() {
            if q != part {
                n.notify_one();
            }
        }
    }
}

/// One partition's loop, until the worker stops and its executions ended.
async fn serve(d: Dispatcher, target: redis_conn::Target, mut stop: watch::Receiver<bool>) {
    let config = d.shared.config.clone();
    let lease = Duration::from_millis(config.lease_ms());
    let (pool, keys, running, acks) = (
        d.pool.clone(),
        d.keys.clone(),
        d.running.clone(),
        d.acks.clone(),
    );
    let acker = tokio::spawn(ack_loop(
        pool.clone(),
        keys.clone(),
        d.shared.parts.clone(),
        acks.clone(),
        config.replicas(),
    ));
    let freed = d.freed.clone();
    let (listening_tx, listening_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    // Renewals on a connection of their own: a WAIT blocks the connection
    // it is sent on (wait_replicas, replicas lagging), and a renewal queued
    // behind an admission's WAIT could come back after the local deadline.
    let renew_pool = redis_conn::pool(&target, 1).unwrap_or_else(|_| pool.clone());
    let renewer = tokio::spawn(lease::renew_loop(
        renew_pool,
        keys.clone(),
        running.clone(),
        lease,
        config.replicas(),
    ));
    let watchdog = tokio::spawn(lease::watchdog(running.clone()));
    let listener = tokio::spawn(wake::listen(
        target,
        keys.clone(),
        listening_rx,
        wake.clone(),
    ));
    // keep_max is the namespace's: each partition keeps its share.
    let mut retention_cfg = config.retention.clone();
    let parts = config.partitions.max(1);
    retention_cfg.keep_max = (retention_cfg.keep_max + parts - 1) / parts;
    let retention = tokio::spawn(retention::retention_loop(
        pool.clone(),
        keys.clone(),
        retention_cfg,
    ));
    // Flow work a carrier left in this partition's hand-off hash when it
    // died (handoff.rs): looked for every HANDOFF_SWEEP, only where flows
    // can cross partitions.
    let sweeper = (d.shared.parts.count() > 1 && !config.flows.is_empty()).then(|| {
        tokio::spawn(handoff::sweep_loop(
            pool.clone(),
            d.shared.parts.clone(),
            keys.clone(),
            config.replicas(),
        ))
    });
    let concurrency = config.worker.concurrency as usize;
    let grace = Duration::from_secs_f64(config.worker.grace_s);
    let room_of = d.room.clone();
    let part = d.part;

    let mut draining: Option<Instant> = None;
    // A handle on a multiplexed connection, kept across turns: a pooled one
    // would be health-checked with a PING at every checkout, and holding the
    // pooled one itself would take it from the pool for good (a worker of P
    // partitions holds 2P such handles).
    let mut held: Option<Connection> = None;
    let mut ckeys: Vec<String> = Vec::new();
    let mut want_claim = true;
    let mut timer: Option<Instant> = None;
    let mut retry_pause = backoff::FIRST;
    // Turns in flight, and the room they claimed: while Redis runs one, the
    // worker starts the jobs of the other.
    let mut turns = FuturesUnordered::new();
    // Turns are numbered as they start: a turn that ends after a later one
    // (its recovery took longer) does not set the timer from its older view.
    let (mut started, mut timer_from) = (0u64, 0u64);
    loop {
        let room = if draining.is_some() {
            0
        } else {
            room_of.free()
        };
        // A second turn only for a batch worth its call: small ones cost
        // Redis more per job than they save in waiting.
        let worth = if turns.is_empty() {
            1
        } else {
            (concurrency / 2).max(1)
        };
        if room >= worth && want_claim && turns.len() < TURNS_IN_FLIGHT {
            if held.is_none() {
                match d.pool.get().await {
                    Ok(c) => held = Some((*c).clone()),
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis connection failed; retrying");
                        tokio::time::sleep(retry_pause).await;
                        retry_pause = backoff::next(retry_pause);
                        continue;
                    }
                }
            }
            // Another partition's loop may have claimed meanwhile.
            let room = room_of.claim(room);
            if room < worth {
                room_of.release(part, room);
                continue;
            }
            // A multiplexed connection: turns in flight share it, pipelined.
            let con = held.as_ref().expect("connection just set").clone();
            want_claim = false;
            let turn = d.turn(con, ckeys.clone(), room);
            started += 1;
            let seq = started;
            turns.push(async move { (turn.await, room, seq) });
            continue;
        }
        if draining.is_some() && d.running.is_empty() && turns.is_empty() {
            break;
        }
        listening_tx.send_replace(room > 0 && turns.is_empty());
        tokio::select! {
            Some((result, claimed, seq)) = turns.next(), if !turns.is_empty() => {
                room_of.release(part, claimed);
                match result {
                    Ok(turn) => {
                        retry_pause = backoff::FIRST;
                        // A steady key stays declared; new ones replace it
                        // when they come next.
                        if !turn.need.is_empty() {
                            ckeys = turn.need;
                        }
                        // A full batch suggests more is waiting; otherwise
                        // sleep until told, or until the next known due time.
                        want_claim |= turn.more;
                        if seq > timer_from {
                            timer_from = seq;
                            timer = turn.next_in.map(|t| Instant::now() + t);
                        }
                    }
                    Err(e) => {
                        held = None;
                        want_claim = true;
                        tracing::warn!(error = %e, "Redis call failed; retrying");
                        tokio::time::sleep(retry_pause).await;
                        retry_pause = backoff::next(retry_pause);
                    }
                }
            }
            _ = freed.notified() => want_claim = true,
            // Another partition's execution ended: room may be back.
            _ = room_of.recheck[part].notified() => {}
            _ = wake.notified(), if draining.is_none() => want_claim = true,
            _ = sleep_until(timer), if timer.is_some() && draining.is_none() => {
                timer = None;
                want_claim = true;
                if room == 0 {
                    d.pass_on_wake();
                }
            }
            // A stop, or the worker gone (the sender dropped): drain.
            _ = stop.changed(), if draining.is_none() => {
                tracing::info!(running = d.running.len(), grace_s = grace.as_secs_f64(), "shutting down: taking no new jobs");
                draining = Some(Instant::now() + grace);
            }
            _ = sleep_until(draining), if draining.is_some() => {
                tracing::warn!(running = d.running.len(), "grace period over: stopping the jobs still running");
                d.running.stop_all(Stop::Shutdown);
                draining = Some(Instant::now() + Duration::from_secs(3600));
            }
        }
    }
    drop(turns);
    listening_tx.send_replace(false);
    // Every result reaches Redis before the worker leaves.
    drop(d);
    acks.close();
    let _ = acker.await;
    renewer.abort();
    watchdog.abort();
    listener.abort();
    retention.abort();
    if let Some(s) = sweeper {
        s.abort();
    }
}

/// A wake-up token on each of this worker's tags' markers that has none.
async fn wake_tags(con: &mut sluice_shared::redis_conn::Pooled, keys: &Keys) {
    for t in keys.own_tags().iter() {
        let marker = keys.marker(t);
        let waiting: redis::RedisResult<i64> = redis::cmd("LLEN")
            .arg(&marker)
            .query_async(&mut **con)
            .await;
        if waiting == Ok(0) {
            let _: redis::RedisResult<()> = redis::cmd("LPUSH")
                .arg(&marker)
                .arg("1")
                .query_async(&mut **con)
                .await;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Dispatcher {
    /// This worker's timer fell due while it has no room: the delayed entry
    /// it timed may be timed by no idle worker (a head moved earlier by a
    /// worker with room wakes none, see next_in_ms in queues.lua), so an
    /// idle worker of each of its tags is woken to take it (or, for a lease
    /// deadline, to recover it).
    fn pass_on_wake(&self) {
        let pool = self.pool.clone();
        let keys = self.keys.clone();
        tokio::spawn(async move {
            if let Ok(mut con) = pool.get().await {
                wake_tags(&mut con, &keys).await;
            }
        });
    }

    /// One turn on `held`, a connection kept across turns: a pooled one would
    /// be health-checked with a PING at every checkout. `ckeys` are the
    /// concurrency keys to declare, as the last turn learned them.
    async fn turn(&self, mut con: Connection, ckeys: Vec<String>, room: usize) -> Result<Turn> {
        let n = self
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lease: Arc<str> = self.keys.lease(&format!("{}:{n}", self.worker_id)).into();
        let mut admit = scripts().admit.call_in(&self.keys);
        admit.key(lease.to_string());
        admit.arg(self.lease_ms).arg(room).arg(&self.served);
        let ended = self.acks.take(crate::ack::BATCH);
        self.acks
            .push_section(&mut admit, &self.keys, &ended, &ckeys);
        let timer = std::time::Instant::now();
        // Before the call: the lease's Redis deadline comes after this plus
        // the lease (fence.rs).
        let sent = crate::fence::now_ns();
        type Reply = (
            Vec<Value>,
            Vec<String>,
            i64,
            i64,
            Vec<String>,
            Vec<String>,
            Vec<(String, i64)>,
            Vec<String>,
            Vec<i64>,
        );
        // With wait_replicas, jobs start only once their admission (and the
        // ends this call recorded) are on the replicas: a failover then
        // cannot hand them to a second worker, nor forget an end.
        admit.replicated(self.replicas);
        let reply: Result<Reply> = admit.query(&mut con).await;
        let (admitted, dropped, left, next_in, expired, need, late, refused, _) = match reply {
            Ok(r) => {
                if !ended.is_empty() {
                    let done = self.acks.settle(ended, &r.8);
                    crate::ack::carry_ends(
                        &self.pool,
                        &self.shared.parts,
                        &self.keys,
                        &done,
                        self.replicas,
                    );
                }
                // A key admission needed declared binds: its ends will too.
                self.acks.learn(r.5.iter().map(String::as_str));
                r
            }
            Err(e) => {
                if !ended.is_empty() {
                    self.acks.not_recorded(ended);
                }
                return Err(e);
            }
        };
        warn_refused(refused);
        ::metrics::histogram!(metrics::SCRIPT_SECONDS, "script" => "admit")
            .record(timer.elapsed().as_secs_f64());
        for id in dropped {
            tracing::debug!(job = %id, "entry not run (cancelled, finished or corrupt)");
        }
        for (_, ms) in late {
            ::metrics::histogram!(metrics::LATENESS_SECONDS).record(ms as f64 / 1000.0);
        }
        let deadline = crate::fence::deadline_after(sent, Duration::from_millis(self.lease_ms));
        self.start(admitted, &lease, deadline);
        if !expired.is_empty() {
            self.recover(&mut con, &expired).await?;
        }
        Ok(Turn {
            need,
            more: left == 1 || expired.len() == room,
            next_in: (next_in >= 0).then(|| Duration::from_millis(next_in as u64)),
        })
    }

    /// Runs recover.lua on expired lease keys: their items name the
    /// executions, and a dead step's flow must hear of it, so the parents are
    /// read first.
    async fn recover(&self, con: &mut Connection, expired: &[String]) -> Result<()> {
        let contents = sluice_shared::lease::read(&mut *con, expired).await?;
        // Leases a call at a time, up to RECOVER_LINES executions a call (a
        // lease holds at most one admission's worth, 1,000).
        let mut group: Vec<(&String, &[String])> = Vec::new();
        let mut lines = 0;
        for (lease, items) in expired.iter().zip(&contents) {
            let n = items.len();
            if !group.is_empty() && lines + n > RECOVER_LINES {
                self.recover_leases(con, &group).await?;
                group.clear();
                lines = 0;
            }
            group.push((lease, items));
            lines += n;
        }
        if !group.is_empty() {
            self.recover_leases(con, &group).await?;
        }
        Ok(())
    }

    /// One recover.lua call for these lease keys and their items.
    async fn recover_leases(
        &self,
        con: &mut Connection,
        leases: &[(&String, &[String])],
    ) -> Result<()> {
        // (lease index from 1, attempt, entry) of every item; a damaged one
        // is skipped (and its lease still goes).
        let mut lines: Vec<(usize, u32, &str)> = Vec::new();
        for (l, (lease, items)) in leases.iter().enumerate() {
            for item in items.iter() {
                match sluice_shared::lease::parse_item(item) {
                    Some((attempt, entry)) => lines.push((l + 1, attempt, entry)),
                    None => {
                        tracing::error!(lease = %lease, item = %item.escape_debug(), "damaged lease item skipped")
                    }
                }
            }
        }
        let ids: Vec<String> = lines
            .iter()
            .map(|(_, _, e)| e[..ID_LEN].to_string())
            .collect();
        let specs = read_specs(&mut *con, &self.keys, &ids).await?;
        let mut call = scripts().recover.call_in(&self.keys);
        call.arg(leases.len());
        for (l, _) in leases {
            call.key(l.to_string());
        }
        for ((l, attempt, entry), spec) in lines.iter().zip(&specs) {
            let ckey = Entry::ckey_of(entry);
            call.key(self.keys.slots(ckey))
                .key(self.keys.wait(ckey))
                .key(self.keys.parent_state(&spec.parent))
                .arg(*l)
                .arg(*attempt)
                .arg(*entry);
        }
        let dead: Vec<String> = call.query(&mut *con).await?;
        for id in dead {
            ::metrics::counter!(metrics::RECOVERED).increment(1);
            tracing::warn!(job = %id, "recovered a job whose worker was lost; it runs again");
        }
        // A recovered step that failed for good told its run through the
        // hand-off hash when the run lives in another partition.
        if self.shared.parts.count() > 1 {
            let (pool, parts) = (self.pool.clone(), self.shared.parts.clone());
            let (keys, replicas) = (self.keys.clone(), self.replicas);
            tokio::spawn(async move {
                // The whole hash, a page at a time (at most 50): entries left
                // unconfirmed while replicas lag can fill the first page.
                let swept = async {
                    let mut con = pool.get().await?;
                    let mut cursor = 0;
                    for _ in 0..50 {
                        cursor = handoff::sweep(&mut *con, &parts, &keys, replicas, cursor)
                            .await?
                            .0;
                        if cursor == 0 {
                            break;
                        }
                    }
                    Ok::<_, sluice_shared::Error>(())
                };
                if let Err(e) = swept.await {
                    tracing::warn!(error = %e, "carrying flow work after a recovery failed; the next sweep tries again");
                }
            });
        }
        Ok(())
    }

    /// Starts the admitted executions (3 values each, see admit.lua). Values
    /// are read leniently: a damaged one fails its job, not the batch.
    fn start(&self, flat: Vec<Value>, lease: &Arc<str>, deadline: i64) {
        let text = |v: &Value| -> String {
            let bytes: Vec<u8> = redis::from_redis_value_ref(v).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let jobs: Vec<Admitted> = flat
            .chunks(3)
            .filter(|c| c.len() == 3)
            .map(|c| Admitted::new(text(&c[0]), &text(&c[1]), &text(&c[2])))
            .collect();
        let entries: Vec<(String, u32)> =
            jobs.iter().map(|j| (j.entry.clone(), j.attempt)).collect();
        let started = self
            .running
            .admit(lease, deadline, crate::fence::now_ns(), &entries);
        for (job, started) in jobs.into_iter().zip(started) {
            ::metrics::counter!(metrics::STARTED, "path" => job.path.clone()).increment(1);
            if job.kind != sluice_shared::JobKind::Flow {
                let queued_ms = job.started - job.ready_at;
                ::metrics::histogram!(metrics::QUEUE_SECONDS)
                    .record(queued_ms.max(0) as f64 / 1000.0);
            }
            let lease = lease.clone();
            let shared = self.shared.clone();
            let acks = self.acks.clone();
            let backoff_ms = crate::admitted::settings(&shared.config, &job).2;
            let (running, freed) = (self.running.clone(), self.freed.clone());
            let (room, part) = (self.room.clone(), self.part);
            tokio::spawn(async move {
                let outcome = execute(&shared, &job, started).await;
                let counter = match &outcome {
                    Outcome::Ok(_) => Some(metrics::SUCCEEDED),
                    Outcome::Err(_) | Outcome::Fail(_) => Some(metrics::FAILED),
                    Outcome::Cancelled => Some(metrics::CANCELLED),
                    Outcome::Lost | Outcome::Parked | Outcome::Throttle(..) => None,
                };
                if let Some(name) = counter {
                    ::metrics::counter!(name, "path" => job.path.clone()).increment(1);
                }
                // Queued before the room it frees is seen, so that the turn
                // this end triggers records it.
                let (entry, attempt) = (job.entry.clone(), job.attempt);
                let lost = matches!(outcome, Outcome::Lost);
                if !matches!(outcome, Outcome::Lost | Outcome::Parked) {
                    acks.push(AckMsg::Done(Done {
                        // A throttle pauses the key: declared, so that the
                        // pause is written in the call that records the end,
                        // before that call admits more of the key's jobs.
                        declare_key: job.declare_key || matches!(outcome, Outcome::Throttle(..)),
                        entry: job.entry,
                        attempt: job.attempt,
                        outcome,
                        backoff_ms,
                        parent: job.parent,
                        started: job.started,
                    }));
                }
                // After this execution's Done, so the lease never goes before
                // a result it covers is recorded.
                if running.lease_done(&lease, lost) {
                    acks.push(AckMsg::LeaseEnded(lease));
                }
                running.remove(&entry, attempt);
                freed.notify_one();
                room.ended(part);
            });
        }
    }
}
