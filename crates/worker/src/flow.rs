//! A flow run's driver. Each time the flow job is admitted (first, and after
//! each of its steps ends) the driver reads where the run stands, decides the
//! next steps, and hands them over with drive.lua, which starts them and parks
//! the flow atomically. Reads are a handful of fields, never the whole state,
//! so each step or for-each iteration costs Redis the same small amount.

use serde_json::Value;
use sluice_shared::config::{FlowConfig, StepConfig};
use sluice_shared::flow::{fill, resolve, Scope};
use sluice_shared::handoff;
use sluice_shared::job::{NewJob, StepOf};
use sluice_shared::partitions::Partitions;
use sluice_shared::redis_conn::Pool;
use sluice_shared::scripts::scripts;
use sluice_shared::{Config, Error, Keys, Result};

use crate::admitted::{Admitted, Outcome};

/// Runs one drive of the flow job; `Parked` when it handed steps over.
pub async fn drive(
    pool: &Pool,
    keys: &Keys,
    parts: &Partitions,
    config: &Config,
    job: &Admitted,
) -> Outcome {
    let Some(flow) = config.flows.get(&job.path) else {
        return Outcome::Err(format!(
            "flow {:?} is not in this worker's config",
            job.path
        ));
    };
    match plan(pool, keys, parts, config, flow, job).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Planning again is harmless: the run is driven anew once this
            // drive's lease runs out.
            tracing::warn!(error = %e, "driving the flow failed; it is driven again after its lease");
            Outcome::Lost
        }
    }
}

struct Driver<'a> {
    keys: &'a Keys,
    parts: &'a Partitions,
    /// Replicas drive.lua's writes must reach (`wait_replicas`).
    replicas: u32,
    state: String,
    /// A handle on a multiplexed connection, not the pooled one: a drive
    /// waiting for replicas must not hold one of the pool's few.
    con: sluice_shared::redis_conn::Connection,
}

impl Driver<'_> {
    async fn get(&mut self, field: &str) -> Result<Option<String>> {
        Ok(redis::cmd("HGET")
            .arg(&self.state)
            .arg(field)
            .query_async(&mut self.con)
            .await?)
    }
    async fn set(&mut self, field: &str, value: &str) -> Result<()> {
        Ok(redis::cmd("HSET")
            .arg(&self.state)
            .arg(field)
            .arg(value)
            .query_async(&mut self.con)
            .await?)
    }
}

async fn plan(
    pool: &Pool,
    keys: &Keys,
    parts: &Partitions,
    config: &Config,
    flow: &FlowConfig,
    job: &Admitted,
) -> Result<Outcome> {
    let input: Value = job.args.clone();
    let mut d = Driver {
        keys,
        parts,
        replicas: config.replicas(),
        state: keys.flow_state(&job.id),
        con: (*pool.get().await?).clone(),
    };
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&d.state)
        .arg(&["fstep", "fe_total", "fe_next", "failed", "active"])
        .query_async(&mut d.con)
        .await?;
    let num = |i: usize| fields[i].as_deref().and_then(|v| v.parse::<usize>().ok());
    let (fstep, fe_total, fe_next) = (num(0), num(1), num(2));
    let (failed, active) = (fields[3].clone(), num(4));
    if let Some(reason) = failed {
        return Ok(Outcome::Err(reason));
    }
    let busy = active.unwrap_or(0) > 0;
    let mut i = fstep.unwrap_or(0);
    let (mut total, mut next) = (fe_total, fe_next.unwrap_or(0));
    loop {
        let Some(step) = flow.steps.get(i) else {
            let last = &flow.steps[flow.steps.len() - 1].id;
            let result = d.get(&format!("r:{last}")).await?.unwrap_or_default();
            return Ok(Outcome::Ok(
                serde_json::from_str(&result).unwrap_or(Value::String(result)),
            ));
        };
        let previous = i.checked_sub(1).map(|p| flow.steps[p].id.clone());
        let results = read_results(&mut d, step, previous.as_deref()).await?;
        let lookup = |s: &str| {
            results
                .iter()
                .find(|(id, _)| id == s)
                .map(|(_, v)| v.clone())
        };
        let scope = Scope {
            flow_input: &input,
            result: &lookup,
            previous_step: previous.as_deref(),
            item: None,
        };
        let Some(each) = &step.for_each else {
            if d.get(&format!("r:{}", step.id)).await?.is_some() {
                i += 1;
                continue;
            }
            if busy {
                return park(&mut d, job, i, None, 0, vec![]).await;
            }
            let args = match step_args(step, &scope, &step.id, || input.clone()) {
                Ok(a) => a,
                Err(reason) => return Ok(Outcome::Err(reason)),
            };
            let child = match new_step(config, job, step, None, args) {
                Ok(c) => c,
                Err(reason) => return Ok(Outcome::Err(reason)),
            };
            return park(&mut d, job, i, None, 0, vec![child]).await;
        };
        // A for-each step: its elements are stored once, one field each, so
        // that every later drive reads only the ones it starts.
        let n = match total {
            Some(n) => n,
            None => {
                let items = match resolve(each, &scope) {
                    Ok(Value::Array(items)) => items,
                    Ok(_) => {
                        return Ok(Outcome::Err(format!(
                            "step {}: for_each {each} is not an array",
                            step.id
                        )))
                    }
                    Err(e) => return Ok(Outcome::Err(format!("step {}: {e}", step.id))),
                };
                let mut pipe = redis::pipe();
                for (k, item) in items.iter().enumerate() {
                    pipe.hset(&d.state, format!("e:{}:{k}", step.id), item.to_string())
                        .ignore();
                }
                pipe.query_async::<()>(&mut d.con).await?;
                next = 0;
                items.len()
            }
        };
        let done: usize = d
            .get(&format!("d:{}", step.id))
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if done >= n {
            let fields: Vec<String> = (0..n).map(|k| format!("i:{}:{k}", step.id)).collect();
            let parts: Vec<Option<String>> = if n == 0 {
                vec![]
            } else {
                redis::cmd("HMGET")
                    .arg(&d.state)
                    .arg(&fields)
                    .query_async(&mut d.con)
                    .await?
            };
            let array: Vec<Value> = parts
                .into_iter()
                .map(|p| {
                    p.and_then(|p| serde_json::from_str(&p).ok())
                        .unwrap_or(Value::Null)
                })
                .collect();
            d.set(&format!("r:{}", step.id), &Value::Array(array).to_string())
                .await?;
            i += 1;
            total = None;
            next = 0;
            continue;
        }
        let in_flight = next - done;
        let start = (step.parallelism as usize)
            .saturating_sub(in_flight)
            .min(n - next);
        let mut children = Vec::with_capacity(start);
        if start > 0 {
            let fields: Vec<String> = (next..next + start)
                .map(|k| format!("e:{}:{k}", step.id))
                .collect();
            let items: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&d.state)
                .arg(&fields)
                .query_async(&mut d.con)
                .await?;
            for (k, item) in (next..).zip(items) {
                let item: Value = item
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(Value::Null);
                let scope = Scope {
                    item: Some((&item, k)),
                    ..scope
                };
                let label = format!("{}[{k}]", step.id);
                let args = match step_args(
                    step,
                    &scope,
                    &label,
                    || serde_json::json!({ "item": item, "index": k }),
                ) {
                    Ok(a) => a,
                    Err(reason) => return Ok(Outcome::Err(reason)),
                };
                match new_step(config, job, step, Some(k), args) {
                    Ok(c) => children.push(c),
                    Err(reason) => return Ok(Outcome::Err(reason)),
                }
            }
        }
        return park(&mut d, job, i, Some(n), next + start, children).await;
    }
}

/// Results the step's references may name: earlier steps' `r:` fields, read
/// only for the steps it names (and the previous one).
async fn read_results(
    d: &mut Driver<'_>,
    step: &StepConfig,
    previous: Option<&str>,
) -> Result<Vec<(String, Value)>> {
    let mut refs = Vec::new();
    if let Some(t) = &step.args {
        sluice_shared::flow::references(t, &mut refs);
    }
    refs.extend(step.for_each.clone());
    let mut names: Vec<String> = refs
        .iter()
        .filter_map(|r| match sluice_shared::flow::parse(r) {
            Some((sluice_shared::flow::Root::Result(s), _)) => Some(s),
            _ => None,
        })
        .collect();
    names.extend(previous.map(str::to_string));
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        if let Some(v) = d.get(&format!("r:{name}")).await? {
            out.push((name, serde_json::from_str(&v).unwrap_or(Value::String(v))));
        }
    }
    Ok(out)
}

/// A step's args: its template filled in, or `default` without one; the
/// error, naming the step (`label`), fails the run.
fn step_args(
    step: &StepConfig,
    scope: &Scope,
    label: &str,
    default: impl FnOnce() -> Value,
) -> Result<Value, String> {
    let args = match &step.args {
        Some(t) => fill(t, scope).map_err(|e| format!("step {label}: {e}"))?,
        None => default(),
    };
    if !args.is_object() {
        return Err(format!("step {label}: its args are not a JSON object"));
    }
    Ok(args)
}

/// A step's job. A step that cannot be planned (its key template names an
/// argument its args lack, renders a bad key, or its args are too large) is
/// an error naming the step, which fails the run: driving it again would
/// meet the same error.
fn new_step(
    config: &Config,
    job: &Admitted,
    step: &StepConfig,
    iter: Option<usize>,
    args: Value,
) -> std::result::Result<NewJob, String> {
    let label = match iter {
        Some(k) => format!("{}[{k}]", step.id),
        None => step.id.clone(),
    };
    let of = StepOf {
        flow_id: job.id.clone(),
        flow_path: job.path.clone(),
        step: step.id.clone(),
        iter,
    };
    let mut step_job =
        NewJob::step(config, of, &job.workspace, args).map_err(|e| format!("step {label}: {e}"))?;
    // A step with a key lives in its key's partition, so that its limit is
    // kept there with its other jobs'; one without, in its run's.
    let count = config.partitions as usize;
    if count > 1 {
        let p = if step_job.ckey.is_empty() {
            sluice_shared::JobId::partition_of(&job.id, count)
        } else {
            sluice_shared::partitions::key_partition(&step_job.ckey, count)
        };
        step_job.id = sluice_shared::JobId::in_partition(p);
    }
    Ok(step_job)
}

/// Starts `children` and parks the flow at step `i`, atomically (drive.lua).
async fn park(
    d: &mut Driver<'_>,
    job: &Admitted,
    i: usize,
    total: Option<usize>,
    next: usize,
    children: Vec<NewJob>,
) -> Result<Outcome> {
    let keys = d.keys;
    // A step's tag may be one no process has registered yet.
    let mut tags: Vec<&str> = children.iter().map(|c| c.tag.as_str()).collect();
    tags.sort_unstable();
    tags.dedup();
    sluice_shared::tags::ensure(keys, &mut d.con, &tags).await?;
    let mut call = scripts().drive.call_in(keys);
    call.key(d.state.clone());
    let total = total.map(|t| t.to_string()).unwrap_or_default();
    call.arg(&job.entry)
        .arg(job.attempt)
        .arg(3)
        .arg("fstep")
        .arg(i)
        .arg("fe_total")
        .arg(total)
        .arg("fe_next")
        .arg(next);
    // A step of another partition is written to this one's hand-off hash,
    // with the parking, then carried there (handoff.rs).
    let mut away: Vec<String> = Vec::new();
    for c in &children {
        if keys.holds(&c.id) {
            // Any key of this partition but the hand-off hash (drive.lua).
            call.key(keys.key_index());
            c.push(&mut call);
        } else {
            call.key(keys.handoff());
            for v in c.values() {
                call.arg(v);
            }
            away.push(format!("start:{}", c.id));
        }
    }
    // Parking and its steps must survive a failover like an admission does.
    call.replicated(d.replicas);
    let outcome: String = call.query(&mut d.con).await?;
    if !away.is_empty() && (outcome == "parked" || outcome == "requeued") {
        let carried = handoff::carry(&mut d.con, d.parts, keys, &away, d.replicas).await;
        if let Err(e) = carried {
            // They wait in the hand-off hash: a sweep carries them.
            tracing::warn!(error = %e, "carrying flow steps to their partitions failed; a sweep tries again within 2 s");
        }
    }
    Ok(match outcome.as_str() {
        "parked" | "requeued" => Outcome::Parked,
        "cancel" => Outcome::Cancelled,
        "refused" => Outcome::Lost,
        other => return Err(Error::invalid("drive.lua reply", other.to_string())),
    })
}
