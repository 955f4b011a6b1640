use std::sync::Arc;

use sluice_shared::error::{Error, Result};
use sluice_shared::job::{Job, JobRequest, NewJob};
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
    pub(crate) keys: Keys,
    pub(crate) pool: Pool,
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
        Ok(Client {
            keys: Keys::new(&config.prefix),
            config: Arc::new(config),
            pool,
        })
    }

    /// The config the client was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Redis key names of the client's namespace (see keys.md).
    pub fn keys(&self) -> &Keys {
        &self.keys
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
        let mut con = self.pool.get().await?;
        // Each job's tag must be registered before a script writes to its queues.
        let mut tags: Vec<&str> = jobs.iter().map(|j| j.tag.as_str()).collect();
        tags.sort_unstable();
        tags.dedup();
        sluice_shared::tags::ensure(&self.keys, &mut *con, &tags).await?;
        let mut ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
        let replicas = self.config.replicas();
        for (n, chunk) in jobs.chunks(BATCH_CHUNK).enumerate() {
            if chunk.iter().any(|j| j.idempotency_key.is_some()) {
                // Ids may come back as those of earlier jobs with the same key.
                let keep_ms = (self.config.retention.keep_s * 1000.0) as u64;
                let mut call = scripts().enqueue_once.call_in(&self.keys);
                call.arg(keep_ms.max(1));
                for job in chunk {
                    let key = job.idempotency_key.as_deref().unwrap_or("");
                    job.push(&self.keys, &mut call);
                    call.key(self.keys.idempotency(key)).arg(key);
                }
                call.replicated(replicas);
                match call.query::<Vec<String>, _>(&mut *con).await {
                    Ok(got) => {
                        let start = n * BATCH_CHUNK;
                        for (slot, id) in ids[start..].iter_mut().zip(got) {
                            *slot = JobId::from_stored(id);
                        }
                        continue;
                    }
                    Err(e) => return Err(partial(&ids, n, chunk, e)),
                }
            }
            let mut call = scripts().enqueue.call_in(&self.keys);
            // Two values a job when none has a key or a delay and they
            // share a tag (see enqueue.lua).
            if chunk.iter().all(NewJob::is_plain) && chunk.iter().all(|j| j.tag == chunk[0].tag) {
                call.arg("plain").arg(&chunk[0].tag);
                for job in chunk {
                    call.arg(&job.id).arg(job.spec_tail());
                }
            } else if let Some((max, window)) = NewJob::keyed_batch(chunk) {
                call.arg("keyed").arg(&chunk[0].tag).arg(max).arg(window);
                for job in chunk {
                    call.key(self.keys.idx_key(&job.ckey));
                    call.arg(&job.id).arg(&job.ckey).arg(job.spec_tail());
                }
            } else {
                call.arg("full");
                for job in chunk {
                    job.push(&self.keys, &mut call);
                }
            }
            // Each chunk is one atomic script call: on a failure, the chunks
            // before it are written and the rest are not.
            // A chunk counts as written once the replicas asked for have it.
            call.replicated(replicas);
            if let Err(e) = call.query::<i64, _>(&mut *con).await {
                return Err(partial(&ids, n, chunk, e));
            }
        }
        Ok(ids)
    }

    /// Reads one job; `None` when there is no such job.
    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.jobs(&[id]).await?.remove(0))
    }

    /// Reads several jobs in one round trip.
    pub async fn jobs<I: AsRef<str>>(&self, ids: &[I]) -> Result<Vec<Option<Job>>> {
        let mut con = self.pool.get().await?;
        let ids: Vec<String> = ids.iter().map(|i| i.as_ref().to_string()).collect();
        read_jobs(&mut *con, &self.keys, &ids).await
    }

    /// Cancels a job that has not finished. For a flow run, the flow first
    /// (so its driver starts nothing more), then every step it has running.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let outcome = self.cancel_one(id).await?;
        let mut con = self.pool.get().await?;
        let spec = read_specs(&mut *con, &self.keys, &[id.to_string()]).await?;
        if spec[0].kind == "flow" {
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(self.keys.flow_state(id))
                .query_async(&mut *con)
                .await?;
            drop(con);
            for child in fields.iter().filter_map(|f| f.strip_prefix("c:")) {
                self.cancel_one(child).await?;
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
        let spec = read_specs(&mut *con, &self.keys, &[id.to_string()])
            .await?
            .remove(0);
        let mut call = scripts().retry.call_in(&self.keys);
        call.arg(id).arg(&spec.ckey);
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
        let spec = read_specs(&mut *con, &self.keys, &[id.to_string()])
            .await?
            .remove(0);
        let ckey = spec.ckey;
        let mut call = scripts().cancel.call_in(&self.keys);
        call.key(self.keys.slots(&ckey))
            .key(self.keys.wait(&ckey))
            .key(self.keys.flow_state(&spec.parent));
        call.arg(id).arg(&ckey);
        let outcome: String = call.query(&mut *con).await?;
        match outcome.as_str() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "requested" => Ok(CancelOutcome::Requested),
            "finished" => Ok(CancelOutcome::AlreadyFinished),
            _ => Err(Error::JobNotFound(id.to_string())),
        }
    }
}

/// The error for chunk `n` of a batch failing with `e`: the chunks
/// before it were written; a reply that never came leaves this one in
/// doubt (Redis may have run it), while an error reply means it did not.
fn partial(ids: &[JobId], n: usize, chunk: &[NewJob], e: Error) -> Error {
    let doubtful = match &e {
        Error::Redis(r) => r.is_io_error() || r.is_timeout() || r.is_connection_dropped(),
        _ => false,
    };
    if n == 0 && !doubtful {
        return e;
    }
    Error::PartlyEnqueued {
        written: ids[..n * BATCH_CHUNK]
            .iter()
            .map(|i| i.to_string())
            .collect(),
        in_doubt: if doubtful {
            chunk.iter().map(|j| j.id.to_string()).collect()
        } else {
            vec![]
        },
        source: Box::new(e),
    }
}
