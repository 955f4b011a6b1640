//! The one place that names Redis keys. Every key of a namespace starts with
//! `{prefix}:`; the braces are a Redis Cluster hash tag, so a namespace lives in
//! one cluster slot and every script can touch all the keys it declares.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:job:<id>` | hash | one job: path, workspace, stamped limit, status, times, result |
//! | `{p}:args:<id>` | string | the job's args (JSON) when over 48 bytes; shorter ones are the hash's `args` field |
//! | `{p}:ready` | list | entries ready to run, FIFO |
//! | `{p}:delayed` | zset | entries due at a known Unix ms: delayed jobs, retries, waiting jobs at their slot |
//! | `{p}:leases` | zset | entries of running executions, scored by lease deadline (Unix ms) |
//! | `{p}:marker` | list | a wake-up token for idle workers (BLPOP) |
//! | `{p}:stats` | hash | `active` (unfinished jobs), `succeeded`, `failed`, `cancelled` counts |
//! | `{p}:slots:<K>` | zset | slots held on concurrency key K: `<id>#<attempt>` running, `<id>#r` reserved; score = Unix ms the slot frees, `+inf` while open-ended |
//! | `{p}:wait:<K>` | list | `<id> <max>` of jobs waiting on K for a running job to end, FIFO |
//! | `{p}:flow:<id>` | hash | a flow run's state: step results, for-each progress, steps running |
//! | `{p}:limits` | hash | concurrency keys in use -> `max window_ms` last stamped |
//! | `{p}:idx:key:<K>` | zset | ids of every job of key K, by creation (Unix ms) |
//! | `{p}:idx:status:<S>` | zset | ids of finished jobs of status S (succeeded, failed, cancelled), by creation |
//! | `{p}:idx:done` | zset | ids of finished jobs, by the moment they finished: retention's order |
//!
//! An entry is the job id, then a space and its concurrency key if it has one.

#[derive(Clone, Debug)]
pub struct Keys {
    base: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            base: format!("{{{prefix}}}:"),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    pub fn job(&self, id: &str) -> String {
        self.key(&format!("job:{id}"))
    }
    pub fn args(&self, id: &str) -> String {
        self.key(&format!("args:{id}"))
    }
    pub fn ready(&self) -> String {
        self.key("ready")
    }
    pub fn delayed(&self) -> String {
        self.key("delayed")
    }
    pub fn leases(&self) -> String {
        self.key("leases")
    }
    pub fn marker(&self) -> String {
        self.key("marker")
    }
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    pub fn slots(&self, ckey: &str) -> String {
        self.key(&format!("slots:{ckey}"))
    }
    pub fn wait(&self, ckey: &str) -> String {
        self.key(&format!("wait:{ckey}"))
    }
    /// Concurrency key -> "max window_ms" as last stamped: the keys in use.
    pub fn limits(&self) -> String {
        self.key("limits")
    }
    /// Every job of concurrency key K (active and finished), by creation (Unix ms).
    pub fn idx_key(&self, ckey: &str) -> String {
        self.key(&format!("idx:key:{ckey}"))
    }
    /// Finished jobs by the moment they finished (Unix ms): what retention reads.
    pub fn idx_done(&self) -> String {
        self.key("idx:done")
    }
    /// Finished jobs of one final status, by creation (Unix ms).
    pub fn idx_status(&self, status: &str) -> String {
        self.key(&format!("idx:status:{status}"))
    }
    /// The four finished-job indexes, in the order the scripts declare them.
    pub fn finish_indexes(&self) -> [String; 4] {
        [
            self.idx_done(),
            self.idx_status("succeeded"),
            self.idx_status("failed"),
            self.idx_status("cancelled"),
        ]
    }
    /// A flow run's state: `r:<step>` results, `i:<step>:<n>` for-each
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

    #[test]
    fn keys_share_the_hash_tag() {
        let k = Keys::new("sluice");
        assert_eq!(k.job("abc"), "{sluice}:job:abc");
        assert_eq!(
            k.slots("default/script/f/x"),
            "{sluice}:slots:default/script/f/x"
        );
        for key in [
            k.ready(),
            k.delayed(),
            k.leases(),
            k.marker(),
            k.stats(),
            k.wait("a"),
        ] {
            assert!(key.starts_with("{sluice}:"), "{key}");
        }
    }
}
