//! Carrying work between partitions. A flow run lives in one partition and
//! a step with a key of its own in its key's: a script cannot touch both.
//! So the script that starts such a step (drive.lua) or ends it (the end of
//! its job, a cancel, a recovery: notify_if_step in jobs.lua) writes it to
//! its own partition's hand-off hash, in the same atomic call, and this
//! module carries it over:
//!
//! - `start:<id>`: the step is enqueued in its partition by enqueue.lua,
//!   which writes nothing for an id it already holds;
//! - `end:<id>`: the end is recorded in the run's state by step_end.lua,
//!   which records it only while the run still waits for that step.
//!
//! Each is removed from the hand-off hash only once carried, so a process
//! that dies on the way leaves it for the next carrier: the worker that
//! wrote it carries it at once; a worker that recovers a lease sweeps that
//! partition, and every worker sweeps its partitions every [`SWEEP_EVERY`]
//! when flows can cross partitions. Carrying twice does the work once.
//!
//! With `wait_replicas`, "carried" means the replicas have it: a carry whose
//! WAIT comes back short leaves its entry, and a later sweep carries it
//! again until one is confirmed. Otherwise a failover that promoted a
//! replica without the carried write would lose the step's start or end
//! while its entry was already gone. A carry that finds its work done
//! already still writes (it counts itself in the stats hash's `repeated`),
//! so that its WAIT waits for the first carry's write too.

use redis::aio::ConnectionLike;

use crate::error::Result;
use crate::keys::Keys;
use crate::partitions::Partitions;
use crate::scripts::scripts;

/// Most fields one sweep carries.
const SWEEP: usize = 100;

/// Carries the hand-off fields `fields` of partition `from` to where they
/// belong; returns how many it carried and removed (not those carried but
/// left until their replicas confirm them). Each is read afresh just before it
/// is carried (another process may have carried it meanwhile), and one that
/// fails is left for a later carrier while the others go on: an outage of
/// one partition holds up only the work bound for it.
pub async fn carry<C: ConnectionLike>(
    con: &mut C,
    parts: &Partitions,
    from: &Keys,
    fields: &[String],
    replicas: u32,
) -> Result<usize> {
    let (mut carried, mut unconfirmed) = (0, 0);
    let mut failed = None;
    for field in fields {
        match carry_one(con, parts, from, field, replicas).await {
            Ok(Carried::Removed) => carried += 1,
            Ok(Carried::Gone) => {}
            Ok(Carried::Unconfirmed) => unconfirmed += 1,
            Err(e) => {
                tracing::warn!(error = %e, field = %field.escape_debug(), "carrying flow work to another partition failed; a sweep tries again");
                failed.get_or_insert(e);
            }
        }
    }
    // One line per call, not per entry: while replicas lag, every crossing
    // and every sweep lands here.
    if unconfirmed > 0 {
        tracing::warn!(entries = unconfirmed, "flow work carried to another partition, but fewer replicas than wait_replicas confirmed it: its hand-off entries stay, and sweeps carry them again");
    }
    match failed {
        Some(e) if carried == 0 => Err(e),
        _ => Ok(carried),
    }
}

/// What carrying one hand-off field did.
enum Carried {
    /// Carried (or dropped as unreadable or no longer wanted) and removed.
    Removed,
    /// Not there: another process carried it.
    Gone,
    /// Carried, but the replicas asked for did not confirm it: left in the
    /// hand-off hash for a later sweep.
    Unconfirmed,
}

/// Carries one field.
async fn carry_one<C: ConnectionLike>(
    con: &mut C,
    parts: &Partitions,
    from: &Keys,
    field: &str,
    replicas: u32,
) -> Result<Carried> {
    let value: Option<String> = redis::cmd("HGET")
        .arg(from.handoff())
        .arg(field)
        .query_async(con)
        .await?;
    let Some(value) = value else {
        return Ok(Carried::Gone);
    };
    let confirmed = if let Some(id) = field.strip_prefix("start:") {
        start(con, parts, from, id, &value, replicas).await?
    } else if let Some(id) = field.strip_prefix("end:") {
        end(con, parts, id, &value, replicas).await?
    } else {
        tracing::error!(field = %field.escape_debug(), "unknown hand-off field removed");
        true
    };
    if !confirmed {
        return Ok(Carried::Unconfirmed);
    }
    let _: () = redis::cmd("HDEL")
        .arg(from.handoff())
        .arg(field)
        .query_async(con)
        .await?;
    Ok(Carried::Removed)
}

/// Carries whatever partition `from` has waiting (after a crash, or left
/// unconfirmed), one HSCAN page from `cursor`; returns the cursor to go on
/// from (0: the scan is done, start again) and how many it carried. A sweep
/// that went on from the start each time would see only the first page
/// while replicas lag and entries stay: those behind it would wait.
pub async fn sweep<C: ConnectionLike>(
    con: &mut C,
    parts: &Partitions,
    from: &Keys,
    replicas: u32,
    cursor: u64,
) -> Result<(u64, usize)> {
    if parts.count() == 1 {
        return Ok((0, 0));
    }
    let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
        .arg(from.handoff())
        .arg(cursor)
        .arg("COUNT")
        .arg(SWEEP)
        .query_async(con)
        .await?;
    let fields: Vec<String> = flat.into_iter().step_by(2).take(SWEEP).collect();
    Ok((next, carry(con, parts, from, &fields, replicas).await?))
}

/// How often a worker looks for flow work left in a hand-off hash by a
/// carrier that died: one HKEYS per partition, only for namespaces of
/// several partitions with flows in the config.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Sweeps partition `from` every [`SWEEP_EVERY`], for ever.
pub async fn sweep_loop(
    pool: crate::redis_conn::Pool,
    parts: std::sync::Arc<Partitions>,
    from: Keys,
    replicas: u32,
) {
    let mut cursor = 0;
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let swept = async {
            let mut con = pool.get().await?;
            sweep(&mut *con, &parts, &from, replicas, cursor).await
        };
        match swept.await {
            Ok((next, n)) => {
                cursor = next;
                if n > 0 {
                    tracing::info!(carried = n, "carried flow work a carrier left behind")
                }
            }
            Err(e) => {
                cursor = 0;
                tracing::warn!(error = %e, "carrying flow work between partitions failed")
            }
        }
    }
}

/// Enqueues step `id` in its own partition from its 7 values (JSON), if
/// its run (in partition `from`) still waits for it: a run cancelled, ended
/// or purged meanwhile, or a step whose end is already recorded (a stale
/// sweep), is not started. Returns whether the entry may go: false when
/// the replicas asked for did not confirm the enqueue.
async fn start<C: ConnectionLike>(
    con: &mut C,
    parts: &Partitions,
    from: &Keys,
    id: &str,
    value: &str,
    replicas: u32,
) -> Result<bool> {
    let values: Vec<String> = match serde_json::from_str(value) {
        Ok(v) if Vec::len(&v) == 7 => v,
        _ => {
            tracing::error!(step = %id, "unreadable step start removed from the hand-off; its flow run waits for it: cancel the run");
            return Ok(true);
        }
    };
    // The run is named in the step's spec (its part after created_at).
    let run = serde_json::from_str::<serde_json::Value>(&format!("{{{}", values[6]))
        .ok()
        .and_then(|spec| spec.get("parent")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let (waits, state): (bool, Option<String>) = redis::pipe()
        .hexists(from.flow_state(&run), format!("c:{id}"))
        .hget(from.state(), &run)
        .query_async(con)
        .await?;
    let running = state
        .as_deref()
        .and_then(crate::state::State::parse)
        .is_some_and(|st| st.status == "running" && !st.cancel);
    if !waits || !running {
        tracing::info!(step = %id, run = %run, "step not started: its run no longer waits for it");
        return Ok(true);
    }
    let to = parts.by_id(id);
    // A start carried again (its first carry unconfirmed) after the step
    // ran, ended and was removed by retention, while its end waits in its
    // own partition's hand-off: the run does not wait for a second run.
    let ended: bool = redis::cmd("HEXISTS")
        .arg(to.handoff())
        .arg(format!("end:{id}"))
        .query_async(con)
        .await?;
    if ended {
        return Ok(true);
    }
    crate::tags::ensure(to, con, &[values[5].as_str()]).await?;
    let mut call = scripts().enqueue.call_in(to);
    call.arg("full");
    for v in &values {
        call.arg(v);
    }
    call.replicated(replicas);
    Ok(call.query_confirmed::<i64, _>(con).await?.1)
}

/// Records step `id`'s end (JSON, see step_end.lua) in its run's
/// partition; returns whether the entry may go (as for [`start`]).
async fn end<C: ConnectionLike>(
    con: &mut C,
    parts: &Partitions,
    id: &str,
    value: &str,
    replicas: u32,
) -> Result<bool> {
    #[derive(serde::Deserialize)]
    struct End {
        p: String,
    }
    let Ok(e) = serde_json::from_str::<End>(value) else {
        tracing::error!(step = %id, "unreadable step end removed from the hand-off; its flow run waits for it: cancel the run");
        return Ok(true);
    };
    let to = parts.by_id(&e.p);
    let mut call = scripts().step_end.call_in(to);
    call.key(to.flow_state(&e.p)).arg(id).arg(value);
    call.replicated(replicas);
    let (got, confirmed): (i64, bool) = call.query_confirmed(con).await?;
    if got < 0 {
        tracing::error!(step = %id, run = %e.p, "unreadable step end removed from the hand-off; its flow run waits for it: cancel the run");
        return Ok(true);
    }
    Ok(confirmed)
}
