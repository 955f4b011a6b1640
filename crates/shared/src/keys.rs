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
