//! The one place that owns the Lua scripts. Each lives in its own file under
//! `lua/`, with a header listing its KEYS, ARGV and return value; every one
//! gets the helper files `lua/records.lua`, `lua/queues.lua`, `lua/held.lua`, `lua/slots.lua`
//! and `lua/jobs.lua` prepended,
//! and admit.lua and ack.lua also `lua/acks.lua`. Calls go out as EVALSHA,
//! singly or pipelined, and a NOSCRIPT reply (a restarted Redis) loads every
//! script again and retries once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use redis::{aio::ConnectionLike, FromRedisValue, ToRedisArgs};

use crate::error::Result;

const RECORDS_LIB: &str = include_str!("../lua/records.lua");
const QUEUES_LIB: &str = include_str!("../lua/queues.lua");
const HELD_LIB: &str = include_str!("../lua/held.lua");
const SLOTS_LIB: &str = include_str!("../lua/slots.lua");
const JOBS_LIB: &str = include_str!("../lua/jobs.lua");
const ACKS_LIB: &str = include_str!("../lua/acks.lua");

/// The helpers every script starts with (records.lua): the stored formats'
/// Lua codecs, for tests that run them on what Rust writes.
pub fn records_lib() -> &'static str {
    RECORDS_LIB
}

/// The running counts' helpers (held.lua), for tests that run its codec.
pub fn held_lib() -> &'static str {
    HELD_LIB
}

/// One Lua script: its source with the helpers prepended, and its SHA1 for EVALSHA.
pub struct Script {
    /// Its name: its file's under `lua/`, without `.lua`.
    pub name: &'static str,
    source: String,
    hash: String,
}

impl Script {
    fn new(name: &'static str, body: &str) -> Self {
        Script::with_lib(name, "", body)
    }

    /// A script that also gets `extra` helpers prepended (acks.lua for the
    /// scripts that record ended executions).
    fn with_lib(name: &'static str, extra: &str, body: &str) -> Self {
        // No shebang: Redis then refuses a script for lack of memory only at
        // its first write that needs memory, never after a write, so a
        // script is never cut half way; and scripts that only free memory
        // (purge, prune, recover) still run when Redis is full.
        let source = format!(
            "{RECORDS_LIB}\n{QUEUES_LIB}\n{HELD_LIB}\n{SLOTS_LIB}\n{JOBS_LIB}\n{extra}\n{body}"
        );
        let hash = redis::Script::new(&source).get_hash().to_string();
        Script { name, source, hash }
    }

    /// Starts a call of this script.
    pub fn call(&'static self) -> Invocation {
        Invocation {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
            ns: None,
            replicas: 0,
        }
    }

    /// Starts a call that declares the namespace's keys first, as every
    /// script but limit_state.lua expects (see records.lua).
    pub fn call_in(&'static self, keys: &crate::Keys) -> Invocation {
        let ns = keys.namespace();
        Invocation {
            script: self,
            ns: Some((keys.clone(), ns.len())),
            keys: ns,
            args: Vec::new(),
            replicas: 0,
        }
    }
}

/// Every Lua script, one field each; each file's header says what it takes and returns.
pub struct Scripts {
    /// Stores a batch of new jobs and makes them ready (or scheduled).
    pub enqueue: Script,
    /// `enqueue`, with callers' idempotency keys: a key seen before gives back its job.
    pub enqueue_once: Script,
    /// Records a worker's ended executions, then admits what is due and ready
    /// under its limits, or sends it to wait.
    pub admit: Script,
    /// Records ended executions and frees (or keeps) their slots, for a worker
    /// with no room to admit more.
    pub ack: Script,
    /// Takes back executions whose lease ran out, and runs them again.
    pub recover: Script,
    /// Extends a worker's leases, and tells it which executions it lost or must cancel.
    pub renew: Script,
    /// Cancels a job that has not finished.
    pub cancel: Script,
    /// Removes finished jobs past retention, with their index entries.
    pub purge: Script,
    /// What `sluice limits` shows of one key. Read-only.
    pub limit_state: Script,
    /// A flow's driver hands over its plan (the steps to start now), then the flow parks.
    pub drive: Script,
    /// Forgets concurrency keys that hold nothing and have nothing waiting.
    pub prune_limits: Script,
    /// Puts a failed or cancelled job back as a new attempt (`sluice retry`).
    pub retry: Script,
    /// Pauses a concurrency key, or ends its pause (`sluice pause`, `resume`).
    pub pause: Script,
    /// Sets or removes a key's limit at run time (`sluice limits set/unset`).
    pub limit_override: Script,
    /// Records a namespace's partition count once, and tells it.
    pub partitions: Script,
    /// Records the end of a step that lived in another partition than its run.
    pub step_end: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: Script::new("enqueue", include_str!("../lua/enqueue.lua")),
    enqueue_once: Script::new("enqueue_once", include_str!("../lua/enqueue_once.lua")),
    admit: Script::with_lib("admit", ACKS_LIB, include_str!("../lua/admit.lua")),
    ack: Script::with_lib("ack", ACKS_LIB, include_str!("../lua/ack.lua")),
    recover: Script::new("recover", include_str!("../lua/recover.lua")),
    renew: Script::new("renew", include_str!("../lua/renew.lua")),
    cancel: Script::new("cancel", include_str!("../lua/cancel.lua")),
    purge: Script::new("purge", include_str!("../lua/purge.lua")),
    limit_state: Script::new("limit_state", include_str!("../lua/limit_state.lua")),
    drive: Script::new("drive", include_str!("../lua/drive.lua")),
    prune_limits: Script::new("prune_limits", include_str!("../lua/prune_limits.lua")),
    retry: Script::new("retry", include_str!("../lua/retry.lua")),
    pause: Script::new("pause", include_str!("../lua/pause.lua")),
    limit_override: Script::new("limit_override", include_str!("../lua/limit_override.lua")),
    partitions: Script::new("partitions", include_str!("../lua/partitions.lua")),
    step_end: Script::new("step_end", include_str!("../lua/step_end.lua")),
});

/// The scripts, built once per process.
pub fn scripts() -> &'static Scripts {
    &SCRIPTS
}

impl Scripts {
    fn all(&self) -> [&Script; 16] {
        [
            &self.enqueue,
            &self.enqueue_once,
            &self.admit,
            &self.ack,
            &self.recover,
            &self.renew,
            &self.cancel,
            &self.purge,
            &self.limit_state,
            &self.drive,
            &self.prune_limits,
            &self.retry,
            &self.pause,
            &self.limit_override,
            &self.partitions,
            &self.step_end,
        ]
    }

    /// Loads every script into Redis (SCRIPT LOAD). One command each,
    /// not a pipeline: on a cluster a lone SCRIPT LOAD goes to every
    /// primary, while in a pipeline it would reach only one node. It runs
    /// at start and after a NOSCRIPT (a restarted or failed-over primary).
    pub async fn load_all<C: ConnectionLike>(&self, con: &mut C) -> Result<()> {
        for s in self.all() {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(&s.source)
                .query_async::<()>(con)
                .await?;
        }
        Ok(())
    }
}

/// One call of a script, with its keys and arguments.
pub struct Invocation {
    script: &'static Script,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
    /// For a call that declares the namespace: its keys, and how many of
    /// the call's keys are the namespace's (they change with the tags).
    ns: Option<(crate::Keys, usize)>,
    /// Replicas the call's writes must reach before its reply counts.
    replicas: u32,
}

/// How long a write waits for its replicas (`wait_replicas`) before the
/// caller goes on without them, with a warning.
pub const REPLICA_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Invocation {
    /// Adds a key (KEYS) to the call.
    pub fn key(&mut self, key: String) -> &mut Self {
        self.keys.push(key);
        self
    }

    /// Adds an argument (ARGV) to the call.
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// Makes the call wait, before its reply counts, until `replicas`
    /// replicas have its writes (WAIT, pipelined right after the script on
    /// the same connection, so on a cluster it goes to the script's node).
    /// When [`REPLICA_WAIT`] runs out first, the reply counts anyway, with a
    /// warning: a replica that is down must not stop the fleet (for the
    /// next 5 s, calls then wait 5 ms at most).
    pub fn replicated(&mut self, replicas: u32) -> &mut Self {
        self.replicas = replicas;
        self
    }

    /// How many keys the call declares so far.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn cmd(&self) -> redis::Cmd {
        self.cmd_with(&self.keys)
    }

    fn cmd_with(&self, keys: &[String]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.script.hash)
            .arg(keys.len())
            .arg(keys)
            .arg(&self.args);
        cmd
    }

    /// Runs the call (EVALSHA) and reads its reply. A NOSCRIPT reply loads
    /// every script and retries once. A STALETAGS reply (a tag was
    /// registered since this process read the registry; nothing was
    /// written) reads the registry and calls again with the new queues.
    pub async fn query<T: FromRedisValue, C: ConnectionLike>(&self, con: &mut C) -> Result<T> {
        Ok(self.query_confirmed(con).await?.0)
    }

    /// Like [`Invocation::query`], and also says whether the replicas asked
    /// for ([`Invocation::replicated`]) confirmed the call's writes: false
    /// when the WAIT came back short (the reply counts all the same). True
    /// when no replica was asked for.
    pub async fn query_confirmed<T: FromRedisValue, C: ConnectionLike>(
        &self,
        con: &mut C,
    ) -> Result<(T, bool)> {
        let mut keys = std::borrow::Cow::Borrowed(&self.keys);
        // Tags are only ever added, and by hand or at a process's start:
        // more than a few in a row would be a registry that keeps changing.
        for _ in 0..4 {
            count_round_trip();
            let got = match self.send(&keys, con).await {
                Err(e) if is_noscript(&e) => {
                    scripts().load_all(con).await?;
                    self.send(&keys, con).await
                }
                other => other,
            };
            match (got, &self.ns) {
                (Err(e), Some((ns_keys, n))) if crate::tags::is_stale(&e) => {
                    crate::tags::refresh(ns_keys, con, &[]).await?;
                    let mut fresh = ns_keys.namespace();
                    fresh.extend_from_slice(&self.keys[*n..]);
                    keys = std::borrow::Cow::Owned(fresh);
                }
                (got, _) => return Ok(got?),
            }
        }
        Err(crate::Error::invalid(
            "tags registry",
            "it changed under every one of 4 calls in a row",
        ))
    }
}

impl Invocation {
    async fn send<T: FromRedisValue, C: ConnectionLike>(
        &self,
        keys: &[String],
        con: &mut C,
    ) -> redis::RedisResult<(T, bool)> {
        if self.replicas == 0 {
            return Ok((self.cmd_with(keys).query_async(con).await?, true));
        }
        let short = replicas_short();
        let wait = if short {
            SHORT_REPLICA_WAIT
        } else {
            REPLICA_WAIT
        };
        let mut pipe = redis::pipe();
        pipe.add_command(self.cmd_with(keys))
            .cmd("WAIT")
            .arg(self.replicas)
            .arg(wait.as_millis() as u64);
        let (reply, got): (T, u32) = pipe.query_async(con).await?;
        // Only a full wait that came back short starts a spell: short waits
        // coming back short must not stretch it for ever.
        if got < self.replicas && !short {
            SHORT_UNTIL_MS.store(
                unix_ms() + SHORT_SPELL.as_millis() as u64,
                Ordering::Relaxed,
            );
            {
                tracing::warn!(script = self.script.name, asked = self.replicas, got, "writes reached fewer replicas than wait_replicas asks within 1 s: going on, and waiting at most 5 ms for them for the next 5 s (a failover meanwhile could lose those writes)");
            }
        }
        Ok((reply, got >= self.replicas))
    }
}

/// After a WAIT came back short, the next calls wait this long at most...
const SHORT_REPLICA_WAIT: std::time::Duration = std::time::Duration::from_millis(5);
/// ...for this long, then one waits the full [`REPLICA_WAIT`] again. A
/// replica that is gone (or a primary just promoted, with none yet) then
/// costs the fleet 5 ms a call and one 1 s call every 5 s, not 1 s a call.
const SHORT_SPELL: std::time::Duration = std::time::Duration::from_secs(5);
static SHORT_UNTIL_MS: AtomicU64 = AtomicU64::new(0);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn replicas_short() -> bool {
    unix_ms() < SHORT_UNTIL_MS.load(Ordering::Relaxed)
}

/// Sends several calls in one round trip; the reply is one value per call.
pub async fn query_pipelined<T: FromRedisValue, C: ConnectionLike>(
    con: &mut C,
    calls: &[&Invocation],
) -> Result<T> {
    let build = || {
        let mut pipe = redis::pipe();
        for c in calls {
            pipe.add_command(c.cmd());
        }
        pipe
    };
    count_round_trip();
    match build().query_async(con).await {
        Err(e) if is_noscript(&e) => {
            scripts().load_all(con).await?;
            Ok(build().query_async(con).await?)
        }
        other => Ok(other?),
    }
}

static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// Counts one request/response exchange with Redis made by this process's hot
/// paths (script calls, pipelines, blocking reads); the benchmark reports it.
pub fn count_round_trip() {
    ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
}

/// Round trips with Redis counted so far in this process (see
/// [`count_round_trip`]).
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
