use std::sync::Arc;

use sluice_shared::error::{Error, Result};
use sluice_shared::job::{Job, JobRequest, NewJob};
use sluice_shared::partitions::Partitions;
use sluice_shared::records::{read_jobs, read_specs};
use sluice_shared::redis_conn::Pool;
use sluice_shared::scripts::scripts;
use sluice_shared::{redis_conn, Config, JobId, Keys};

/// Jobs written per enqueue.lua call: large enough to amortise the round trip,
/// small enough not to stall Redis for other clients.
const BATCH_CHUNK: usize = 250;

/// A handle on one Sluice namespace. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) config: Arc<Config>,
    /// The namespace's partitions (one unless `partitions` says more).
    pub(crate) parts: Arc<Partitions>,
    pub(crate) pool: Pool,
    /// Whether this client recorded the partition count (at its first enqueue).
    recorded: Arc<std::sync::atomic::AtomicBool>,
}

/// What `Client::cancel` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting or queued and is now cancelled.
    Cancelled,
    /// The job is running: its worker stops it at its next lease renewal.
    Requested,
    /// The job had already finished; nothing changed.
    AlreadyFinished,
}

/// What `Client::retry` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The failed or cancelled job is queued again, as a new attempt.
    Queued,
    /// It has not finished: there is nothing to retry yet.
    Unfinished,
    /// It succeeded: nothing to retry.
    Succeeded,
    /// A flow's step or a flow run: enqueue the flow again instead.
    FlowPart,
}

impl Client {
    /// Connects and checks that Redis answers.
    pub async fn connect(config: Config) -> Result<Client> {
        let target = config.redis_target();
        let pool = redis_conn::pool(&target, 8)?;
        redis_conn::ping(&pool, &target).await?;
        let parts = Partitions::new(&config.prefix, config.partitions as usize);
        parts.check(&mut *pool.get().await?, false).await?;
        Ok(Client {
            recorded: Arc::default(),
            parts: Arc::new(parts),
            config: Arc::new(config),
            pool,
        })
    }

    /// The config the client was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Redis key names of the namespace's first partition (the whole
    /// namespace unless `partitions` is more than 1; see keys.md).
    pub fn keys(&self) -> &Keys {
        &self.parts.all()[0]
    }

    /// The namespace's partitions.
    pub fn partitions(&self) -> &Partitions {
        &self.parts
    }

    /// Records the partition count, once per client, before its first
    /// write of a job or a key: connecting only reads it (partitions.rs).
    pub(crate) async fn record_partitions(
        &self,
        con: &mut sluice_shared::redis_conn::Pooled,
    ) -> Result<()> {
        if !self.recorded.load(std::sync::atomic::Ordering::Relaxed) {
            self.parts.check(&mut **con, true).await?;
            self.recorded
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// The keys of job `id`'s partition.
    pub(crate) fn keys_of(&self, id: &str) -> &Keys {
        self.parts.by_id(id)
    }

    /// Enqueues one job and returns its id.
    pub async fn enqueue(&self, req: JobRequest) -> Result<JobId> {
        Ok(self
            .enqueue_batch(std::slice::from_ref(&req))
            .await?
            .remove(0))
    }

    /// Enqueues many jobs in few round trips, returning their ids in order.
    /// Every request is validated before anything is written, so bad input
    /// leaves nothing behind; the error names the index of the bad request.
    /// Jobs go in atomic calls of 250: if Redis fails after the first call,
    /// or the connection fails while Redis has a call, the error is
    /// [`Error::PartlyEnqueued`], with the ids that were written and those
    /// that may have been.
    pub async fn enqueue_batch(&self, reqs: &[JobRequest]) -> Result<Vec<JobId>> {
        let jobs = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                NewJob::build(&self.config, r).map_err(|e| match reqs.len() {
                    1 => e,
                    _ => Error::invalid(format!("job #{}", i + 1), e.to_string()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut jobs = jobs;
        // Each job goes to its partition (see partitions.rs); its id tells which.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.parts.count()];
        for (i, job) in jobs.iter_mut().enumerate() {
            let parent = job.parent.as_ref().map_or("", |p| p.flow_id.as_str());
            let p = self
                .parts
                .place(&job.ckey, job.idempotency_key.as_deref(), parent);
            job.id = self.parts.new_id(p);
            groups[p].push(i);
        }
        let mut ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
        let mut written: Vec<String> = Vec::new();
        let mut con = self.pool.get().await?;
        self.record_partitions(&mut con).await?;
        for (p, group) in groups.iter().enumerate().filter(|(_, g)| !g.is_empty()) {
            let keys = &self.parts.all()[p];
            let part: Vec<&NewJob> = group.iter().map(|&i| &jobs[i]).collect();
            // Each job's tag must be registered before a script writes to its queues.
            let mut tags: Vec<&str> = part.iter().map(|j| j.tag.as_str()).collect();
            tags.sort_unstable();
            tags.dedup();
            if let Err(e) = sluice_shared::tags::ensure(keys, &mut *con, &tags).await {
                return Err(partial(&written, &[], e));
            }
            for (chunk, slots) in part.chunks(BATCH_CHUNK).zip(group.chunks(BATCH_CHUNK)) {
                match self.enqueue_chunk(keys, &mut con, chunk).await {
                    Ok(Some(got)) => {
                        // Ids may come back as those of earlier jobs with the same key.
                        for (&i, id) in slots.iter().zip(got) {
                            ids[i] = JobId::from_stored(id);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Err(partial(&written, chunk, e)),
                }
                written.extend(chunk.iter().map(|j| j.id.to_string()));
            }
        }
        Ok(ids)
    }

    /// Writes one chunk of jobs of partition `keys` in one atomic script
    /// call; with idempotency keys, the ids each stands for.
    async fn enqueue_chunk(
        &self,
        keys: &Keys,
        con: &mut sluice_shared::redis_conn::Pooled,
        chunk: &[&NewJob],
    ) -> Result<Option<Vec<String>>> {
        // A chunk counts as written once the replicas asked for have it.
        let replicas = self.config.replicas();
        if chunk.iter().any(|j| j.idempotency_key.is_some()) {
            let keep_ms = (self.config.retention.keep_s * 1000.0) as u64;
            let mut call = scripts().enqueue_once.call_in(keys);
            call.arg(keep_ms.max(1));
            for job in chunk {
                let key = job.idempotency_key.as_deref().unwrap_or("");
                job.push(&mut call);
                call.key(keys.idempotency(key)).arg(key);
            }
            call.replicated(replicas);
            return Ok(Some(call.query::<Vec<String>, _>(&mut **con).await?));
        }
        let mut call = scripts().enqueue.call_in(keys);
        // Two values a job when none has a key or a delay and they
        // share a tag (see enqueue.lua).
        if chunk.iter().all(|j| j.is_plain()) && chunk.iter().all(|j| j.tag == chunk[0].tag) {
            call.arg("plain").arg(&chunk[0].tag);
            for job in chunk {
                call.arg(&job.id).arg(job.spec_tail());
            }
        } else if let Some((max, window)) = NewJob::keyed_batch(chunk) {
            call.arg("keyed").arg(&chunk[0].tag).arg(max).arg(window);
            for job in chunk {
                call.arg(&job.id).arg(&job.ckey).arg(job.spec_tail());
            }
        } else {
            call.arg("full");
            for job in chunk {
                job.push(&mut call);
            }
        }
        call.replicated(replicas);
        call.query::<i64, _>(&mut **con).await?;
        Ok(None)
    }

    /// Reads one job; `None` when there is no such job.
    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.jobs(&[id]).await?.remove(0))
    }

    /// Reads several jobs in one round trip.
    pub async fn jobs<I: AsRef<str>>(&self, ids: &[I]) -> Result<Vec<Option<Job>>> {
        let mut con = self.pool.get().await?;
        let ids: Vec<String> = ids.iter().map(|i| i.as_ref().to_string()).collect();
        if self.parts.count() == 1 {
            return read_jobs(&mut *con, self.keys(), &ids).await;
        }
        // One read per partition the ids name, put back in the asked order.
        let mut out: Vec<Option<Job>> = vec![None; ids.len()];
        for (p, keys) in self.parts.all().iter().enumerate() {
            let mine: Vec<usize> = (0..ids.len())
                .filter(|&i| self.parts.of_id(&ids[i]) == p)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let asked: Vec<String> = mine.iter().map(|&i| ids[i].clone()).collect();
            for (i, job) in mine
                .into_iter()
                .zip(read_jobs(&mut *con, keys, &asked).await?)
            {
                out[i] = job;
            }
        }
        Ok(out)
    }

    /// Cancels a job that has not finished. For a flow run, the flow first
    /// (so its driver starts nothing more), then every step it has running.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let outcome = self.cancel_one(id).await?;
        let mut con = self.pool.get().await?;
        let keys = self.keys_of(id);
        let spec = read_specs(&mut *con, keys, &[id.to_string()]).await?;
        if spec[0].kind == "flow" {
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(keys.flow_state(id))
                .query_async(&mut *con)
                .await?;
            drop(con);
            for child in fields.iter().filter_map(|f| f.strip_prefix("c:")) {
                match self.cancel_one(child).await {
                    // A step of another partition not carried there yet: the
                    // carrier sees its run cancelled and does not start it.
                    Err(Error::JobNotFound(_)) => {}
                    other => {
                        other?;
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Puts a failed or cancelled job back as a new attempt, queued behind
    /// what is ready now and admitted under its limit. Its earlier attempts
    /// stay counted, so a job that used all of its `max_attempts` gets this
    /// one attempt more.
    pub async fn retry(&self, id: &str) -> Result<RetryOutcome> {
        let mut con = self.pool.get().await?;
        let keys = self.keys_of(id);
        let spec = read_specs(&mut *con, keys, &[id.to_string()])
            .await?
            .remove(0);
        let mut call = scripts().retry.call_in(keys);
        call.arg(id).arg(&spec.ckey);
        call.replicated(self.config.replicas());
        let outcome: String = call.query(&mut *con).await?;
        match outcome.as_str() {
            "queued" => Ok(RetryOutcome::Queued),
            "unfinished" => Ok(RetryOutcome::Unfinished),
            "succeeded" => Ok(RetryOutcome::Succeeded),
            "step" => Ok(RetryOutcome::FlowPart),
            _ => Err(Error::JobNotFound(id.to_string())),
        }
    }

    async fn cancel_one(&self, id: &str) -> Result<CancelOutcome> {
        let mut con = self.pool.get().await?;
        let keys = self.keys_of(id);
        let spec = read_specs(&mut *con, keys, &[id.to_string()])
            .await?
            .remove(0);
        let ckey = spec.ckey;
        let mut call = scripts().cancel.call_in(keys);
        call.key(keys.slots(&ckey))
            .key(keys.wait(&ckey))
            .key(keys.parent_state(&spec.parent));
        call.arg(id).arg(&ckey);
        call.replicated(self.config.replicas());
        let outcome: String = call.query(&mut *con).await?;
        if !spec.parent.is_empty() && !keys.holds(&spec.parent) {
            // The step's run lives in another partition: its end is carried
            // there now (or, failing that, at a worker's retention pass).
            let end = [format!("end:{id}")];
            let replicas = self.config.replicas();
            let carried =
                sluice_shared::handoff::carry(&mut *con, &self.parts, keys, &end, replicas).await;
            if let Err(e) = carried {
                // The cancel is done; a worker's sweep carries the end.
                tracing::warn!(error = %e, "carrying the cancelled step's end to its run failed; a worker's sweep carries it");
            }
        }
        match outcome.as_str() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "requested" => Ok(CancelOutcome::Requested),
            "finished" => Ok(CancelOutcome::AlreadyFinished),
            _ => Err(Error::JobNotFound(id.to_string())),
        }
    }
}

/// The error for a chunk of a batch failing with `e`: the jobs in
/// `written` were; a reply that never came leaves `chunk` in doubt (Redis
/// may have run it), while an error reply means it was not written.
fn partial(written: &[String], chunk: &[&NewJob], e: Error) -> Error {
    let doubtful = match &e {
        Error::Redis(r) => {
            r.is_io_error()
                || r.is_timeout()
                || r.is_connection_dropped()
                // The WAIT after the script failed: the script ran.
                || r.clone()
                    .into_server_errors()
                    .is_some_and(|errs| errs.iter().any(|(i, _)| *i > 0))
        }
        _ => false,
    };
    if written.is_empty() && !doubtful {
        return e;
    }
    Error::PartlyEnqueued {
        written: written.to_vec(),
        in_doubt: if doubtful {
            chunk.iter().map(|j| j.id.to_string()).collect()
        } else {
            vec![]
        },
        source: Box::new(e),
    }
}
