//! `sluice runs`: jobs newest first, filtered, read from indexes.
//!
//! Finished jobs come from `idx:status:<S>`, walked newest first a page at
//! a time (most recently finished first); unfinished jobs from the live
//! structures that hold them (ready list, delayed set, lease keys, wait
//! lists), so queued jobs cost no index memory. Path and workspace filters
//! are applied to what those sources yield.
//!
//! A key filter reads the key's own partition only. The entries of the
//! status lists and live structures name their job's key (entry.rs), so the
//! key's jobs are picked out of them before any job is read: a scan linear
//! in the jobs kept, with no index written per job at enqueue (a tenth of a
//! keyed job's cost to Redis). Jobs that older versions enqueued are also
//! in the key index (key_index.rs), walked too.

use std::collections::HashSet;

use sluice_shared::entry::Entry;
use sluice_shared::error::Result;
use sluice_shared::job::{Job, Status};
use sluice_shared::key_index;

use crate::Client;

/// Ids read per index page.
const PAGE: isize = 200;
/// Entries read per page of a status list when only one key's are kept:
/// most are other keys', and only those that match are read in full.
const KEY_PAGE: isize = 1_000;
/// Most entries read from each live structure when listing unfinished jobs.
const ACTIVE_CAP: isize = 100_000;

/// An index `Client::runs` walks, newest first.
enum Index<'a> {
    /// A final status's list of finished jobs' entries, with only those of
    /// key `ckey` kept when it is set.
    Status { list: String, ckey: Option<&'a str> },
    /// A concurrency key's jobs that older versions indexed (key_index.rs),
    /// walked from `cursor`.
    Key {
        keys: &'a sluice_shared::Keys,
        ckey: &'a str,
        cursor: key_index::Cursor,
    },
}

/// Which jobs `Client::runs` lists. The filters are optional; `limit` is not:
/// the default, 0, lists nothing.
#[derive(Clone, Debug, Default)]
pub struct RunsQuery {
    /// Only jobs of this concurrency key.
    pub concurrency_key: Option<String>,
    /// Only jobs of this status.
    pub status: Option<Status>,
    /// Only jobs of this path.
    pub path: Option<String>,
    /// Only jobs of this workspace.
    pub workspace: Option<String>,
    /// The most jobs returned.
    pub limit: usize,
    /// When set, at most this many finished jobs of each index are looked
    /// at (newest first), so that a filter that matches few of millions
    /// answers quickly; the dashboard sets it.
    pub scan_limit: Option<usize>,
}

impl RunsQuery {
    fn matches(&self, j: &Job) -> bool {
        self.status.is_none_or(|s| j.status == s.as_str())
            && self.path.as_ref().is_none_or(|p| &j.path == p)
            && self.workspace.as_ref().is_none_or(|w| &j.workspace == w)
            && self
                .concurrency_key
                .as_ref()
                .is_none_or(|k| j.concurrency_key.as_ref() == Some(k))
    }
}

impl Client {
    /// The jobs that match `q`, newest created first, at most `q.limit`.
    pub async fn runs(&self, q: &RunsQuery) -> Result<Vec<Job>> {
        let mut found: Vec<Job> = Vec::new();
        let finished: Vec<Status> = match q.status {
            Some(s) if s.is_final() => vec![s],
            Some(_) => vec![],
            None => vec![Status::Succeeded, Status::Failed, Status::Cancelled],
        };
        let ckey = q.concurrency_key.as_deref();
        // Everything of a key lives in its partition; without one, each
        // partition keeps its own indexes, and their newest are merged below.
        let parts: Vec<&sluice_shared::Keys> = match ckey {
            Some(k) => vec![self.parts.by_key(k)],
            None => self.parts.all().iter().collect(),
        };
        for keys in parts {
            for s in &finished {
                let list = keys.idx_status(s.as_str());
                found.extend(self.walk_index(Index::Status { list, ckey }, q).await?);
            }
            if let Some(k) = ckey {
                let index = Index::Key {
                    keys,
                    ckey: k,
                    cursor: Default::default(),
                };
                found.extend(self.walk_index(index, q).await?);
            }
            if q.status.is_none_or(|s| !s.is_final()) {
                let cap = q
                    .scan_limit
                    .map_or(ACTIVE_CAP, |n| (n as isize).min(ACTIVE_CAP));
                let ids = self.active_ids(keys, cap, ckey).await?;
                found.extend(self.read(&ids).await?.into_iter().filter(|j| q.matches(j)));
            }
        }
        found.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        found.dedup_by(|a, b| a.id == b.id);
        found.truncate(q.limit);
        Ok(found)
    }

    /// The newest `q.limit` matches of one index: a status's list (in the
    /// order jobs finished) or a key's jobs an older version indexed (by
    /// creation).
    async fn walk_index(&self, mut index: Index<'_>, q: &RunsQuery) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        let mut start = 0isize;
        let budget = q.scan_limit.map_or(isize::MAX, |n| n as isize);
        while out.len() < q.limit && start < budget {
            let mut con = self.pool.get().await?;
            let (ids, looked): (Vec<String>, isize) = match &mut index {
                Index::Status { list, ckey } => {
                    // Not past the budget (scan_limit).
                    let page = if ckey.is_some() { KEY_PAGE } else { PAGE }.min(budget - start);
                    let mut entries: Vec<String> = redis::cmd("LRANGE")
                        .arg(&*list)
                        .arg(-(start + page))
                        .arg(-(start + 1))
                        .query_async(&mut *con)
                        .await?;
                    let n = entries.len() as isize;
                    entries.reverse();
                    (job_ids(entries, *ckey), n)
                }
                Index::Key { keys, ckey, cursor } => {
                    let ids =
                        key_index::next_page(&mut *con, keys, ckey, cursor, PAGE as usize).await?;
                    let n = ids.len() as isize;
                    (ids, n)
                }
            };
            drop(con);
            if looked == 0 {
                break;
            }
            start += looked;
            out.extend(
                self.read(&ids)
                    .await?
                    .into_iter()
                    .filter(|j| q.matches(j))
                    .take(q.limit - out.len()),
            );
        }
        Ok(out)
    }

    /// Ids of unfinished jobs of one partition, from the structures that
    /// hold them; with `ckey`, only that key's.
    async fn active_ids(
        &self,
        keys: &sluice_shared::Keys,
        cap: isize,
        ckey: Option<&str>,
    ) -> Result<Vec<String>> {
        let mut con = self.pool.get().await?;
        // A key's waiters are in its wait list; without a key, in those of
        // every key in use: the registry's, and the running counts' that
        // mark keys of their own (" s", held.lua), as a key with waiters is.
        let waited: Vec<String> = match ckey {
            Some(k) => vec![k.to_string()],
            None => {
                let (registry, running): (Vec<String>, Vec<(String, String)>) = redis::pipe()
                    .hkeys(keys.limits())
                    .hgetall(keys.running())
                    .query_async(&mut *con)
                    .await?;
                let marked = running
                    .into_iter()
                    .filter(|(_, v)| v.ends_with(" s"))
                    .map(|(k, _)| k);
                let mut all: Vec<String> = registry
                    .into_iter()
                    .chain(marked)
                    .filter(|k| !k.starts_with(sluice_shared::keys::OVERRIDE_MARK))
                    .collect();
                all.sort();
                all.dedup();
                all
            }
        };
        let leases: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.leases())
            .arg(0)
            .arg(cap - 1)
            .query_async(&mut *con)
            .await?;
        let tags = sluice_shared::tags::known(keys, &mut *con).await?;
        let mut pipe = redis::pipe();
        for t in tags.iter() {
            pipe.lrange(keys.ready(t), -cap, -1)
                .zrange(keys.delayed(t), 0, cap - 1);
        }
        for k in &waited {
            pipe.lrange(keys.wait(k), 0, cap - 1);
        }
        let mut lists: Vec<Vec<String>> = pipe.query_async(&mut *con).await?;
        let wait_lists = lists.split_off(2 * tags.len());
        // Running jobs are the items of the lease keys (lease.rs).
        let items = sluice_shared::lease::read(&mut *con, &leases).await?;
        lists.push(
            sluice_shared::lease::entries(&items)
                .map(str::to_string)
                .collect(),
        );
        let mut seen = HashSet::new();
        // A wait list's items are `<id> <max>`, not entries: all of them are
        // its key's.
        let waiting = wait_lists
            .into_iter()
            .flatten()
            .filter_map(|w| w.get(..sluice_shared::entry::ID_LEN).map(str::to_string));
        Ok(job_ids(lists.into_iter().flatten(), ckey)
            .into_iter()
            .chain(waiting)
            .filter(|id| seen.insert(id.clone()))
            .collect())
    }

    /// These jobs, skipping ids whose records are gone.
    async fn read(&self, ids: &[String]) -> Result<Vec<Job>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            out.extend(self.jobs(chunk).await?.into_iter().flatten());
        }
        Ok(out)
    }
}

/// The ids of jobs' entries (each a job's id, then its key when it has one;
/// an older version stored bare ids in the status lists); with `ckey`, only
/// those naming that key. Wake entries name no job.
pub(crate) fn job_ids(
    entries: impl IntoIterator<Item = String>,
    ckey: Option<&str>,
) -> Vec<String> {
    entries
        .into_iter()
        .filter_map(|e| match Entry::parse(&e)? {
            Entry::Job { id, ckey: k } if ckey.is_none_or(|c| c == k) => Some(id),
            _ => None,
        })
        .collect()
}
