//! `sluice runs`: jobs newest first, filtered, read from indexes.
//!
//! Finished jobs come from `idx:status:<S>` (or, with a key filter, from
//! the key's range of the key index and an older namespace's `idx:key:<K>`),
//! walked newest first a page at a time (most recently finished
//! first for a status; newest created first for a key); unfinished jobs from the live
//! structures that hold them (ready list, delayed set, lease keys, wait lists), so
//! queued jobs cost no index memory. Path and workspace filters are applied to
//! what those sources yield.

use std::collections::HashSet;

use sluice_shared::entry::Entry;
use sluice_shared::error::Result;
use sluice_shared::job::{Job, Status};
use sluice_shared::key_index;

use crate::Client;

/// Ids read per index page.
const PAGE: isize = 200;
/// Most entries read from each live structure when listing unfinished jobs.
const ACTIVE_CAP: isize = 100_000;

/// An index `Client::runs` walks, newest first.
enum Index<'a> {
    /// A final status's list of finished jobs.
    Status(String),
    /// A concurrency key's jobs (key_index.rs), walked from `cursor`.
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
        if let Some(k) = &q.concurrency_key {
            let index = Index::Key {
                keys: self.parts.by_key(k),
                ckey: k,
                cursor: Default::default(),
            };
            found.extend(self.walk_index(index, q).await?);
        } else {
            let finished: Vec<Status> = match q.status {
                Some(s) if s.is_final() => vec![s],
                Some(_) => vec![],
                None => vec![Status::Succeeded, Status::Failed, Status::Cancelled],
            };
            // Each partition keeps its own indexes: the newest of each are
            // merged below.
            for keys in self.parts.all() {
                for s in &finished {
                    let index = Index::Status(keys.idx_status(s.as_str()));
                    found.extend(self.walk_index(index, q).await?);
                }
                if q.status.is_none_or(|s| !s.is_final()) {
                    let cap = q
                        .scan_limit
                        .map_or(ACTIVE_CAP, |n| (n as isize).min(ACTIVE_CAP));
                    let ids = self.active_ids(keys, cap).await?;
                    found.extend(self.read(&ids).await?.into_iter().filter(|j| q.matches(j)));
                }
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

    /// The newest `q.limit` matches of one index: a key's jobs (by
    /// creation) or a status's list (in the order jobs finished).
    async fn walk_index(&self, mut index: Index<'_>, q: &RunsQuery) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        let mut start = 0isize;
        let budget = q.scan_limit.map_or(isize::MAX, |n| n as isize);
        while out.len() < q.limit && start < budget {
            let mut con = self.pool.get().await?;
            let ids: Vec<String> = match &mut index {
                Index::Status(list) => {
                    let mut page: Vec<String> = redis::cmd("LRANGE")
                        .arg(list)
                        .arg(-(start + PAGE))
                        .arg(-(start + 1))
                        .query_async(&mut *con)
                        .await?;
                    page.reverse();
                    page
                }
                Index::Key { keys, ckey, cursor } => {
                    key_index::next_page(&mut *con, keys, ckey, cursor, PAGE as usize).await?
                }
            };
            drop(con);
            if ids.is_empty() {
                break;
            }
            start += PAGE;
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

    /// Ids of unfinished jobs of one partition, from the structures that hold them.
    async fn active_ids(&self, keys: &sluice_shared::Keys, cap: isize) -> Result<Vec<String>> {
        let mut con = self.pool.get().await?;
        let limited: Vec<String> = redis::cmd("HKEYS")
            .arg(keys.limits())
            .query_async(&mut *con)
            .await?;
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
        for k in limited
            .iter()
            .filter(|k| !k.starts_with(sluice_shared::keys::OVERRIDE_MARK))
        {
            pipe.lrange(keys.wait(k), 0, cap - 1);
        }
        let mut lists: Vec<Vec<String>> = pipe.query_async(&mut *con).await?;
        // Running jobs are the items of the lease keys (lease.rs).
        let items = sluice_shared::lease::read(&mut *con, &leases).await?;
        lists.push(
            items
                .iter()
                .flatten()
                .filter_map(|i| sluice_shared::lease::parse_item(i).map(|(_, e)| e.to_string()))
                .collect(),
        );
        let mut seen = HashSet::new();
        Ok(lists
            .into_iter()
            .flatten()
            .filter_map(|e| Entry::parse(&e).and_then(|e| e.id().map(str::to_string)))
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
