//! The one place that names Redis keys. Every key of a partition starts with
//! `{tag}:`; the braces are a Redis Cluster hash tag, so a partition lives in
//! one cluster slot and every script can touch all the keys it declares. A
//! namespace of one partition (the default) has the tag `{prefix}`; one of
//! several has a tag per partition (partitions.rs). Below, `{p}` is a
//! partition's tag.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:jobs` | hash | job id -> its spec, JSON written once at enqueue: `created_at`, `path`, `workspace`, the stamped limit (`ckey`, `max`, `window_ms`), `max_attempts` when not 3, `kind`, `parent`, `flow`, `step`, `iter` for a flow's step, and `args` last |
//! | `{p}:state` | hash | job id -> `<status> <attempt> <since>[ <word>...]`: status, attempts started, the Unix ms it entered that status (for scheduled: when it falls due), then `ready=<ms>` once waiting, running or finished when it became ready other than at its creation, `started=<ms>` once finished, `drive=active\|parked\|queued` for a flow run, `cancel` when a cancel was requested while running, `dirty` when a step of a driving flow ended |
//! | `{p}:results` | hash | job id -> its result JSON (succeeded) or its last error text |
//! | `{p}:tags` | set | every tag in use (registered by the workers that serve it and the producers that enqueue to it); scripts declare the queues of each |
//! | `{p}:ready:<T>` | list | entries of tag T ready to run, FIFO |
//! | `{p}:delayed:<T>` | zset | entries of tag T due at a known Unix ms: delayed jobs, retries, waiting jobs at their slot, and `wake <K>` (look at key K's waiters again then) |
//! | `{p}:leases` | zset | names of lease keys, scored by their deadline (Unix ms) |
//! | `{p}:lease:<worker>:<n>` | list | the jobs one admit.lua call gave a worker, an item `<attempt> <entry>` each (lease.rs); gone once they have all ended (or been recovered) |
//! | `{p}:marker:<T>` | list | a wake-up token for idle workers of tag T (BLPOP) |
//! | `{p}:stats` | hash | `active` (unfinished jobs), `waiting` (of those, waiting on a limit), and the `succeeded`, `failed`, `cancelled` jobs stored (retention lowers them); `repeated`: calls that found their work done and wrote nothing else (a cluster client's re-send of enqueue, enqueue_once, admit or drive; an idempotent chunk whose every key named an earlier job; a hand-off carried again), counted so that a WAIT after them covers the writes they answer with |
//! | `{p}:running` | hash | concurrency key K -> `<n>`, then ` w` and ` s` when they apply: the executions of K running now (one per running attempt, one per flow run), ` w` while one of them may have a window, ` s` while K's own slots and wait keys may hold something or K has a limit set at run time; absent when nothing runs and K has nothing of its own. A field `\x1f` pins the hash as a hash table; the hash goes with the last count |
//! | `{p}:slots:<K>` | zset | what K holds beyond its running executions: `<id>#<attempt>` an ended execution in its window (`<id>#f` a flow run's), `<id>#r` reserved, `<id>#c` the tail of a cancelled reservation, and `pause` (no slot: the key admits nothing until its score) ; score = Unix ms the slot frees, `+inf` while open-ended; expires with its last timed slot |
//! | `{p}:wait:<K>` | list | `<id> <max>` of jobs waiting on K for a running job to end, FIFO |
//! | `{p}:flow:<id>` | hash | a flow run's state: its entry, the step it is at (`fstep`, `fe_total`, `fe_next`), step results (`r:<step>`), for-each elements (`e:<step>:<n>`), their results (`i:<step>:<n>`) and count done (`d:<step>`), steps running (`c:<id>`, `active`), the first failure (`failed`) |
//! | `{p}:limits` | hash | concurrency keys put in use by a slow path -> `max window_ms` stamped on the job that did: a job sent to wait (or throttled), a flow run, a job admitted other than by its key's count alone while none of the key runs; never at enqueue, nor by an admission by the count (those keys are listed from `{p}:running`); keys that hold and wait for nothing are pruned by retention. A field `\x1f<K>` holds the limit set at run time for K (`sluice limits set`), `max window_ms` |
//! | `{p}:handoff` | hash | work crossing to another partition (namespaces of several partitions): `start:<id>` -> a flow's step (its 7 enqueue values, JSON) to enqueue in the step's partition; `end:<id>` -> a step's end (JSON: flow run, step, position, status, result) to record in the run's partition; written in the same script as the start or end, removed once carried (handoff.rs) |
//! | `{p}:idx:keys` | zset | (jobs enqueued by versions before the status lists held entries) keyed jobs, score 0, member `<len>:<K><created ms><id>` (key_index.rs): one lexical range per key K, oldest first; read and purged, no longer written |
//! | `{p}:idx:key:<K>` | zset | (jobs enqueued by versions older still) ids of key K's jobs, by creation (Unix ms); read and purged, no longer written |
//! | `{p}:idem:<key>` | string | the id of the job a caller's idempotency key enqueued; expires after `retention.keep_s` |
//! | `{prefix}:partitions` | string | how many partitions the namespace has, recorded by the first enqueue or worker start (1 for a namespace that held jobs before it existed; see partitions.rs); always under the namespace's own tag `{prefix}`, not a partition's |
//! | `{p}:idx:status:<S>` | list | entries of finished jobs of status S (succeeded, failed, cancelled), in the order they finished: `runs --status` reads the tail, retention the head; `runs --concurrency-key` scans them for the key's entries (older versions stored bare ids) |
//!
//! An entry is the job id, then a space and its concurrency key if it has one.
//! Jobs live in three namespace-wide hashes rather than a key each, so that a
//! script reads or writes a whole batch of jobs with one command per hash.

use std::sync::{Arc, RwLock};

/// What a field of the limits hash starts with when it holds a limit set at
/// run time, followed by its key (no key holds a control character).
pub const OVERRIDE_MARK: char = '\u{1f}';

/// The field of the limits hash for a limit set at run time on `ckey`.
pub fn override_field(ckey: &str) -> String {
    format!("{OVERRIDE_MARK}{ckey}")
}

/// The tag of a job whose script or flow names none, and of a worker's
/// config that lists none.
pub const DEFAULT_TAG: &str = "default";

/// The Redis key names of one namespace (one `prefix`), with this process's
/// view of the namespace's tags registry, shared by every clone.
#[derive(Clone, Debug)]
pub struct Keys {
    base: String,
    tags: Arc<RwLock<TagView>>,
    /// This partition's index, and how many the namespace has.
    index: usize,
    count: usize,
}

/// The tags a process knows are registered, and those it must register
/// itself (a worker's own).
#[derive(Debug, Default)]
struct TagView {
    known: Arc<Vec<String>>,
    own: Arc<Vec<String>>,
}

impl Keys {
    /// The keys of namespace `prefix`: each starts with `{prefix}:`.
    pub fn new(prefix: &str) -> Self {
        Keys::for_tag(prefix)
    }

    /// The keys of one partition, whose hash tag is `tag` (see partitions.rs):
    /// each starts with `{tag}:`.
    pub fn for_tag(tag: &str) -> Self {
        Keys::partition(tag, 0, 1)
    }

    /// The keys of partition `index` of `count`, whose hash tag is `tag`.
    pub fn partition(tag: &str, index: usize, count: usize) -> Self {
        Keys {
            base: format!("{{{tag}}}:"),
            tags: Arc::default(),
            index,
            count: count.max(1),
        }
    }

    /// Whether job `id` lives in this partition (its id tells, see id.rs).
    pub fn holds(&self, id: &str) -> bool {
        self.count == 1 || crate::JobId::partition_of(id, self.count) == self.index
    }

    /// What a script that may end a step declares for the step's flow run
    /// `parent`: its state hash when the run lives in this partition, else
    /// this partition's hand-off hash, where the end waits to be carried to
    /// the run's partition (handoff.rs).
    pub fn parent_state(&self, parent: &str) -> String {
        if parent.is_empty() || self.holds(parent) {
            self.flow_state(parent)
        } else {
            self.handoff()
        }
    }

    /// Work waiting to cross to another partition: `start:<id>` a flow's
    /// step to enqueue in its own partition, `end:<id>` a step's end to
    /// record in its run's partition (handoff.rs).
    pub fn handoff(&self) -> String {
        self.key("handoff")
    }

    /// How many partitions the namespace has: recorded once, in the
    /// namespace's own hash tag (`{prefix}`), whatever the partitions' tags.
    pub fn partition_count(prefix: &str) -> String {
        format!("{{{prefix}}}:partitions")
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    /// Job id -> spec (JSON).
    pub fn jobs(&self) -> String {
        self.key("jobs")
    }
    /// Job id -> "<status> <attempt> <since>[ <word>...]".
    pub fn state(&self) -> String {
        self.key("state")
    }
    /// Job id -> result JSON or last error.
    pub fn results(&self) -> String {
        self.key("results")
    }
    /// Every tag in use (a set); see [`Keys::known_tags`].
    pub fn tags_registry(&self) -> String {
        self.key("tags")
    }
    /// Entries of tag `tag` ready to run, FIFO (a list).
    pub fn ready(&self, tag: &str) -> String {
        self.key(&format!("ready:{tag}"))
    }
    /// Entries of tag `tag` due at a known Unix ms: delayed jobs, retries,
    /// waiting jobs at their slot (a sorted set).
    pub fn delayed(&self, tag: &str) -> String {
        self.key(&format!("delayed:{tag}"))
    }
    /// Names of lease keys, scored by their deadline in Unix ms.
    pub fn leases(&self) -> String {
        self.key("leases")
    }
    /// The lease key of one admission batch of a worker.
    pub fn lease(&self, batch: &str) -> String {
        self.key(&format!("lease:{batch}"))
    }
    /// A wake-up token for idle workers of tag `tag`, which block on it (BLPOP).
    pub fn marker(&self, tag: &str) -> String {
        self.key(&format!("marker:{tag}"))
    }
    /// Job counts: `active` (unfinished), `waiting`, `succeeded`, `failed`, `cancelled`.
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// Concurrency key -> executions of it running now, then " w" (one may
    /// have a window) and " s" (its own keys, slots and wait, are in use):
    /// see held.lua. A field named by the unit separator alone pins it as a
    /// hash table.
    pub fn running(&self) -> String {
        self.key("running")
    }
    /// Slots held on concurrency key `ckey`, scored by the Unix ms each frees.
    pub fn slots(&self, ckey: &str) -> String {
        self.key(&format!("slots:{ckey}"))
    }
    /// Jobs waiting on `ckey` for a running job to end, FIFO (a list).
    pub fn wait(&self, ckey: &str) -> String {
        self.key(&format!("wait:{ckey}"))
    }
    /// Concurrency key -> "max window_ms" as stamped on the job that put it
    /// in use by a slow path (held.lua); with the running counts, the keys
    /// in use.
    pub fn limits(&self) -> String {
        self.key("limits")
    }
    /// Keyed jobs of this partition that older versions enqueued, one
    /// lexical range per key (key_index.rs): read and purged, no longer
    /// written.
    pub fn key_index(&self) -> String {
        self.key("idx:keys")
    }
    /// The jobs of concurrency key K by creation (Unix ms), as versions
    /// before [`Keys::key_index`] wrote them: still read and purged, no
    /// longer written.
    pub fn legacy_idx_key(&self, ckey: &str) -> String {
        self.key(&format!("idx:key:{ckey}"))
    }
    /// The job a caller's idempotency key enqueued.
    pub fn idempotency(&self, key: &str) -> String {
        self.key(&format!("idem:{key}"))
    }
    /// Finished jobs of one final status, a list in the order they finished.
    pub fn idx_status(&self, status: &str) -> String {
        self.key(&format!("idx:status:{status}"))
    }
    /// The keys every script but limit_state.lua declares first, in the
    /// order records.lua names them: the namespace's own, then the queues
    /// of every tag this process knows is registered.
    pub fn namespace(&self) -> Vec<String> {
        let known = self.known_tags();
        let mut keys = Vec::with_capacity(12 + 3 * known.len());
        keys.extend([
            self.jobs(),
            self.state(),
            self.results(),
            self.leases(),
            self.stats(),
            self.limits(),
            self.idx_status("succeeded"),
            self.idx_status("failed"),
            self.idx_status("cancelled"),
            self.tags_registry(),
            self.running(),
            self.key_index(),
        ]);
        for tag in known.iter() {
            keys.extend([self.ready(tag), self.delayed(tag), self.marker(tag)]);
        }
        keys
    }

    /// The tags this process last read from the registry, sorted.
    pub fn known_tags(&self) -> Arc<Vec<String>> {
        self.view().known.clone()
    }

    /// Whether the registry held `tag` when this process last read it.
    pub fn knows_tag(&self, tag: &str) -> bool {
        self.view().known.iter().any(|t| t == tag)
    }

    /// Records what the registry holds (read by [`crate::tags`]).
    pub fn set_known_tags(&self, mut tags: Vec<String>) {
        tags.sort();
        tags.dedup();
        self.tags.write().unwrap_or_else(|e| e.into_inner()).known = Arc::new(tags);
    }

    /// The tags this process serves (a worker's), registered again whenever
    /// it reads the registry.
    pub fn own_tags(&self) -> Arc<Vec<String>> {
        self.view().own.clone()
    }

    /// Sets the tags this process serves.
    pub fn set_own_tags(&self, tags: Vec<String>) {
        self.tags.write().unwrap_or_else(|e| e.into_inner()).own = Arc::new(tags);
    }

    fn view(&self) -> std::sync::RwLockReadGuard<'_, TagView> {
        // A panic elsewhere while holding the lock leaves a valid view.
        self.tags.read().unwrap_or_else(|e| e.into_inner())
    }
    /// A flow run's state: `entry` (its queue entry), `fstep` (the step it
    /// is at), `fe_total`/`fe_next` (that for-each step's size and next
    /// element), `r:<step>` results, `i:<step>:<n>` for-each
    /// results, `d:<step>` iterations done, `c:<id>` steps running, `active`
    /// their count, `failed` the first failure.
    pub fn flow_state(&self, flow_id: &str) -> String {
        self.key(&format!("flow:{flow_id}"))
    }
    /// Every key of the namespace matches this pattern (for SCAN in tools and tests).
    pub fn pattern(&self) -> String {
        self.key("*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/keys.md presents this module's table to operators: the same
    /// keys, no more and no fewer.
    #[test]
    fn the_operators_page_names_the_same_keys() {
        let names = |text: &str| -> std::collections::BTreeSet<String> {
            text.split('`')
                .filter(|t| t.starts_with("{p}:") && !t.contains(' '))
                .map(str::to_string)
                .collect()
        };
        let table: String = include_str!("keys.rs")
            .lines()
            .filter(|l| l.starts_with("//! | `{p}:"))
            .map(|l| l.split('|').nth(1).unwrap_or(""))
            .collect();
        let page: String = include_str!("../../../docs/keys.md")
            .lines()
            .filter(|l| l.starts_with("| `{p}:"))
            .map(|l| l.split('|').nth(1).unwrap_or(""))
            .collect();
        assert!(names(&table).len() >= 15, "{:?}", names(&table));
        assert_eq!(names(&table), names(&page));
    }

    #[test]
    fn keys_share_the_hash_tag() {
        let k = Keys::new("sluice");
        assert_eq!(k.jobs(), "{sluice}:jobs");
        assert_eq!(
            k.slots("default/script/f/x"),
            "{sluice}:slots:default/script/f/x"
        );
        assert_eq!(k.namespace().len(), 12);
        assert_eq!(k.namespace()[11], "{sluice}:idx:keys");
        k.set_known_tags(vec!["b".into(), "a".into(), "a".into()]);
        assert_eq!(k.namespace().len(), 18);
        assert_eq!(k.namespace()[12], "{sluice}:ready:a");
        assert_eq!(k.clone().known_tags(), k.known_tags());
        for key in k.namespace().into_iter().chain([
            k.ready("a"),
            k.delayed("a"),
            k.leases(),
            k.marker("a"),
            k.stats(),
            k.wait("a"),
        ]) {
            assert!(key.starts_with("{sluice}:"), "{key}");
        }
    }
}
