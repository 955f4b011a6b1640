//! The config: a TOML file (`--config PATH` or `SLUICE_CONFIG`) overridden by
//! `SLUICE_…` environment variables: `SLUICE_REDIS_URL` for `redis_url`, and
//! `SLUICE_SECTION__KEY` for nested settings (`SLUICE_WORKER__CONCURRENCY`).
//! Validated once at load; every error names the setting. Unknown keys are
//! refused, in the file and in the environment, so a typo never silently
//! becomes a default; counts must be integers, and every duration is finite
//! and at most [`MAX_SECONDS`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::template::KeyTemplate;

/// The whole config: where Redis is, the namespace, the workers' settings, and
/// every script and flow that may be enqueued.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Redis URL (`redis://` or `rediss://`); default
    /// `redis://127.0.0.1:6379`.
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each); when set,
    /// Sluice talks to the cluster instead of `redis_url`, which must then
    /// be left unset. In the environment, `SLUICE_CLUSTER_URLS=a,b`.
    #[serde(default)]
    pub cluster_urls: Vec<String>,
    /// How many partitions the namespace has (1 to 256, default 1): each
    /// its own hash tag, so a Redis Cluster spreads them over its primaries.
    /// Set when the namespace is created and recorded in Redis; a process
    /// whose config disagrees refuses to start. See partitions.rs.
    #[serde(default = "one", deserialize_with = "integer")]
    pub partitions: i64,
    /// Replicas each write of a job's life (enqueue, admission, end) must
    /// reach before Sluice goes on (Redis WAIT, at most 1 s each); 0
    /// (default) waits for none. See the README on failover.
    #[serde(default, deserialize_with = "integer")]
    pub wait_replicas: i64,
    /// The namespace: every Redis key starts with `{prefix}:`; default `sluice`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// `text` (default) or `json` log lines.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// How worker processes run (`[worker]`).
    #[serde(default)]
    pub worker: WorkerConfig,
    /// How long finished jobs stay (`[retention]`).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The dashboard, `sluice ui` (`[ui]`).
    #[serde(default)]
    pub ui: UiConfig,
    /// The scripts, by path (`[scripts."<path>"]`).
    #[serde(default)]
    pub scripts: BTreeMap<String, ScriptConfig>,
    /// The flows, by path (`[flows."<path>"]`).
    #[serde(default)]
    pub flows: BTreeMap<String, FlowConfig>,
}

/// How worker processes run: the `[worker]` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs one worker process runs at once.
    #[serde(default = "default_concurrency", deserialize_with = "integer")]
    pub concurrency: i64,
    /// Prometheus `/metrics` and `/healthz`; off when unset.
    pub metrics_addr: Option<String>,
    /// How long a running job's lease lasts without renewal.
    #[serde(default = "default_lease_s", deserialize_with = "seconds")]
    pub lease_s: f64,
    /// On SIGTERM/SIGINT, how long running jobs get to finish.
    #[serde(default = "default_grace_s", deserialize_with = "seconds")]
    pub grace_s: f64,
    /// The tags whose jobs this worker runs; default `["default"]`. In the
    /// environment, `SLUICE_WORKER__TAGS=a,b`.
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
}

fn default_tags() -> Vec<String> {
    vec![crate::keys::DEFAULT_TAG.to_string()]
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: default_concurrency(),
            metrics_addr: None,
            lease_s: default_lease_s(),
            grace_s: default_grace_s(),
            tags: default_tags(),
        }
    }
}

/// The dashboard (`sluice ui`): where it listens, and the token every
/// request must carry when it listens beyond loopback.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// host:port; default `127.0.0.1:8080`.
    #[serde(default = "default_ui_listen")]
    pub listen: String,
    /// Required to listen on any address but loopback; also read from
    /// `SLUICE_UI_TOKEN`.
    pub token: Option<String>,
}

fn default_ui_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            listen: default_ui_listen(),
            token: None,
        }
    }
}

/// How long finished jobs stay: removed once older than `keep_s` or beyond
/// the newest `keep_max`, whichever comes first; workers check every `every_s`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished jobs older than this, in seconds, are removed; default 7 days.
    #[serde(default = "default_keep_s", deserialize_with = "seconds")]
    pub keep_s: f64,
    /// At most this many finished jobs stay, the newest; default 1,000,000.
    #[serde(default = "default_keep_max", deserialize_with = "integer")]
    pub keep_max: i64,
    /// How often workers look for finished jobs to remove, in seconds; default 60.
    #[serde(default = "default_every_s", deserialize_with = "seconds")]
    pub every_s: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_s: default_keep_s(),
            keep_max: default_keep_max(),
            every_s: default_every_s(),
        }
    }
}

/// A script (`[scripts."<path>"]`): how it runs, its limit and its retries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// argv; without it a Rust handler registered in the worker serves the path.
    pub command: Option<Vec<String>>,
    /// How long one attempt may run, in seconds; default 300.
    #[serde(default = "default_timeout_s", deserialize_with = "seconds")]
    pub timeout_s: f64,
    /// Its concurrency limit; none when unset.
    pub concurrency: Option<LimitConfig>,
    /// Attempts a job gets in all, at least 1; default 3.
    #[serde(default = "default_max_attempts", deserialize_with = "integer")]
    pub max_attempts: i64,
    /// First retry delay; each further retry doubles it.
    #[serde(default = "default_backoff_s", deserialize_with = "seconds")]
    pub backoff_s: f64,
    /// Which workers run it: those with this tag in `[worker] tags`;
    /// `default` when unset.
    pub tag: Option<String>,
}

/// A concurrency limit as the config states it: `{ max, window_s, key }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// How many slots the key has, at least 1.
    #[serde(deserialize_with = "integer")]
    pub max: i64,
    /// How long a slot stays held after its execution ends, in seconds; default 0.
    #[serde(default, deserialize_with = "seconds")]
    pub window_s: f64,
    /// A template naming the key the limit is counted on; the default key when unset.
    pub key: Option<String>,
}

/// A flow (`[flows."<path>"]`): its steps, in order, and a limit on its runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// A limit on the flow's runs, counted on `flow:` keys of their own; none when unset.
    pub concurrency: Option<LimitConfig>,
    /// The steps, run in order; at least one.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// Which workers drive its runs, and run its steps whose script names
    /// no tag of its own (and its inline commands); `default` when unset.
    pub tag: Option<String>,
}

/// One step of a flow: a script of the config, or an inline command.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// The step's id: unique in the flow, without ':', '[' or spaces;
    /// `$results.<id>` names its result.
    pub id: String,
    /// Run this script (its limit, key, timeout and retries apply) ...
    pub script: Option<String>,
    /// ... or this inline command, with its own settings below.
    pub command: Option<Vec<String>>,
    /// The inline command's limit (a step that runs a script has that script's).
    pub concurrency: Option<LimitConfig>,
    /// The step's args: a JSON template (see flow.rs); the flow's input when unset,
    /// `{"item": …, "index": …}` for a for-each iteration.
    pub args: Option<serde_json::Value>,
    /// A reference to an array: one job per element, `parallelism` at a time.
    pub for_each: Option<String>,
    /// For a for-each step: how many iterations run at once, 1 to
    /// [`MAX_BATCH`]; default 10.
    #[serde(default = "default_parallelism", deserialize_with = "integer")]
    pub parallelism: i64,
    /// The inline command's time per attempt, in seconds; default 300.
    #[serde(default = "default_timeout_s", deserialize_with = "seconds")]
    pub timeout_s: f64,
    /// The inline command's attempts in all, at least 1; default 3.
    #[serde(default = "default_max_attempts", deserialize_with = "integer")]
    pub max_attempts: i64,
    /// The inline command's first retry delay, in seconds; each further retry
    /// doubles it. Default 1.
    #[serde(default = "default_backoff_s", deserialize_with = "seconds")]
    pub backoff_s: f64,
}

/// The most jobs one script call handles: a worker's concurrency and a
/// for-each's parallelism. It keeps every list a script unpacks far below
/// Lua's limit of about 8,000 values.
pub const MAX_BATCH: i64 = 1000;

/// Attempts a job gets when its script's config says nothing; a spec stamps
/// `max_attempts` only when it differs (see slots.lua).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The longest duration any setting takes (a window, a timeout, a lease):
/// 366 days. Beyond it a value is almost surely a mistake, and Redis scores
/// in ms stay exact far past it.
pub const MAX_SECONDS: f64 = 366.0 * 86_400.0;

/// The shortest lease: a worker renews every third of it and fences itself
/// at four fifths, so shorter ones leave no room for a round trip.
pub const MIN_LEASE_S: f64 = 0.5;

/// Variables that Sluice sets for the commands it runs (see command.rs). A
/// command may itself run `sluice`: they are not settings, and must not be
/// refused as unknown ones.
pub const CHILD_ENV: [&str; 5] = [
    "SLUICE_JOB_ID",
    "SLUICE_PATH",
    "SLUICE_WORKSPACE",
    "SLUICE_CONCURRENCY_KEY",
    "SLUICE_ATTEMPT",
];

/// Whether an environment variable is one of the `SLUICE_…` names that are
/// not settings: the config file's name, the child variables above, and the
/// scripts' and tests' own knobs.
fn not_a_setting(name: &str) -> bool {
    name == "SLUICE_CONFIG"
        || name == "SLUICE_UI_TOKEN"
        || CHILD_ENV.contains(&name)
        // The scripts' own knobs, and what Kubernetes sets in every pod for a
        // Service named `sluice` (SLUICE_SERVICE_HOST, SLUICE_PORT_9464_TCP...).
        || [
            "SLUICE_TEST_",
            "SLUICE_DEMO_",
            "SLUICE_BIN_DIR",
            "SLUICE_CHAOS_",
            "SLUICE_SERVICE_",
            "SLUICE_PORT",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

/// A duration in seconds: a number, never a string or a boolean that would
/// be coerced into one. (From the environment, "60" arrives already parsed.)
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    struct Seconds;
    impl serde::de::Visitor<'_> for Seconds {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number of seconds")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<f64, E> {
            Ok(v)
        }
    }
    d.deserialize_any(Seconds)
}

/// A count: an integer, never a float rounded or a string parsed. (From the
/// environment, "2" arrives already parsed as an integer.)
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    struct Integer;
    impl serde::de::Visitor<'_> for Integer {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
        }
    }
    d.deserialize_any(Integer)
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".into()
}
fn one() -> i64 {
    1
}

fn default_prefix() -> String {
    "sluice".into()
}
fn default_log_format() -> String {
    "text".into()
}
fn default_concurrency() -> i64 {
    16
}
fn default_lease_s() -> f64 {
    30.0
}
fn default_grace_s() -> f64 {
    30.0
}
fn default_keep_s() -> f64 {
    7.0 * 24.0 * 3600.0
}
fn default_keep_max() -> i64 {
    1_000_000
}
fn default_every_s() -> f64 {
    60.0
}
fn default_parallelism() -> i64 {
    10
}
fn default_timeout_s() -> f64 {
    300.0
}
fn default_max_attempts() -> i64 {
    DEFAULT_MAX_ATTEMPTS as i64
}
fn default_backoff_s() -> f64 {
    1.0
}

/// A limit as it is stamped on a job: `max` slots, each held `window_ms` past
/// the end of its execution, on the resolved key.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    /// How many slots the key has.
    pub max: u32,
    /// How long a slot stays held past the end of its execution, in ms.
    pub window_ms: u64,
    /// The key's template; `None` for the path's default key.
    pub key: Option<KeyTemplate>,
}

impl Config {
    /// Loads the file at `path` (or `SLUICE_CONFIG`, or none) with the
    /// process environment's overrides.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let from_env = env.get("SLUICE_CONFIG").map(Path::new);
        Config::load_with_env(path.or(from_env), env.clone())
    }

    /// Loads with an explicit environment: what `load` does, testable.
    pub fn load_with_env(path: Option<&Path>, env: HashMap<String, String>) -> Result<Config> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            if !path.exists() {
                return Err(Error::Config(format!(
                    "file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SLUICE_") && !not_a_setting(k))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SLUICE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("worker.tags")
                .with_list_parse_key("cluster_urls")
                .source(Some(env)),
        );
        // An unknown key may come from the file or from a SLUICE_... variable.
        let where_ = match path {
            Some(p) => format!(" (in {} or the SLUICE_... environment)", p.display()),
            None => " (in the SLUICE_... environment)".to_string(),
        };
        let cfg: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| Error::Config(format!("{e}{where_}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Replicas a write must reach before Sluice goes on (`wait_replicas`).
    pub fn replicas(&self) -> u32 {
        self.wait_replicas.clamp(0, 16) as u32
    }

    /// Where Redis is: the cluster when `cluster_urls` is set, else `redis_url`.
    pub fn redis_target(&self) -> crate::redis_conn::Target {
        if self.cluster_urls.is_empty() {
            crate::redis_conn::Target::Single(self.redis_url.clone())
        } else {
            crate::redis_conn::Target::Cluster(self.cluster_urls.clone())
        }
    }

    fn validate_cluster_urls(&self) -> Result<()> {
        let bad = |reason: String| Error::Config(format!("cluster_urls: {reason}"));
        if self.cluster_urls.is_empty() {
            return Ok(());
        }
        // Both set is a typo or a half-edited config: which Redis holds the
        // jobs must never be a guess.
        if self.redis_url != default_redis_url() {
            return Err(bad(format!(
                "set together with redis_url ({}); set only one",
                crate::redis_conn::redacted(&self.redis_url)
            )));
        }
        for url in &self.cluster_urls {
            let shown = crate::redis_conn::redacted(url);
            let info =
                redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|e| {
                    bad(format!(
                        "{shown:?} is not a Redis URL: {}",
                        e.to_string().replace(url.as_str(), &shown)
                    ))
                })?;
            if info.redis_settings().db() != 0 {
                return Err(bad(format!(
                    "{shown:?} names database {}; a cluster has only database 0",
                    info.redis_settings().db()
                )));
            }
        }
        Ok(())
    }

    /// Checks every setting, as `load` does; call it after changing a loaded
    /// config. The error names the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |setting: &str, reason: String| Error::Config(format!("{setting}: {reason}"));
        // The URL may hold a password: messages show it redacted.
        redis::Client::open(self.redis_url.as_str()).map_err(|e| {
            bad(
                "redis_url",
                format!(
                    "{:?} is not a Redis URL: {}",
                    crate::redis_conn::redacted(&self.redis_url),
                    e.to_string().replace(
                        &self.redis_url,
                        &crate::redis_conn::redacted(&self.redis_url)
                    )
                ),
            )
        })?;
        self.validate_cluster_urls()?;
        if !(1..=crate::partitions::MAX_PARTITIONS as i64).contains(&self.partitions) {
            return Err(bad(
                "partitions",
                format!(
                    "{} must be between 1 and {}",
                    self.partitions,
                    crate::partitions::MAX_PARTITIONS
                ),
            ));
        }
        if self.prefix.contains('#') {
            // Partition tags are `prefix#i`: a prefix with '#' could meet them.
            return Err(bad(
                "prefix",
                format!("{:?} must not contain '#'", self.prefix),
            ));
        }
        if !(0..=16).contains(&self.wait_replicas) {
            return Err(bad(
                "wait_replicas",
                format!("{} must be between 0 and 16", self.wait_replicas),
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}', ' ']) {
            return Err(bad(
                "prefix",
                format!(
                    "{:?} must be non-empty, without braces or spaces",
                    self.prefix
                ),
            ));
        }
        if self.log_format != "text" && self.log_format != "json" {
            return Err(bad(
                "log_format",
                format!("{:?} must be \"text\" or \"json\"", self.log_format),
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.worker.concurrency) {
            return Err(bad(
                "worker.concurrency",
                format!(
                    "must be 1 to {MAX_BATCH}, got {}; run more worker processes for more",
                    self.worker.concurrency
                ),
            ));
        }
        positive(self.worker.lease_s, "worker.lease_s")?;
        if self.worker.lease_s < MIN_LEASE_S {
            return Err(bad(
                "worker.lease_s",
                format!(
                    "must be at least {MIN_LEASE_S} s (renewals go every third of it), got {}",
                    self.worker.lease_s
                ),
            ));
        }
        if let Some(addr) = &self.worker.metrics_addr {
            addr.parse::<std::net::SocketAddr>().map_err(|e| {
                bad(
                    "worker.metrics_addr",
                    format!("{addr:?} is not host:port: {e}"),
                )
            })?;
        }
        self.ui
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| {
                bad(
                    "ui.listen",
                    format!("{:?} is not host:port: {e}", self.ui.listen),
                )
            })?;
        if let Some(t) = &self.ui.token {
            // What a header and a cookie carry as they are.
            let fits = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
            if t.len() < 16 || !t.chars().all(fits) {
                return Err(bad(
                    "ui.token",
                    "must be at least 16 characters of ASCII letters, digits and -._~+/=".into(),
                ));
            }
        }
        non_negative(self.retention.keep_s, "retention.keep_s")?;
        positive(self.retention.every_s, "retention.every_s")?;
        if self.retention.keep_max < 0 {
            return Err(bad(
                "retention.keep_max",
                format!("must be 0 or more, got {}", self.retention.keep_max),
            ));
        }
        non_negative(self.worker.grace_s, "worker.grace_s")?;
        if self.worker.tags.is_empty() {
            return Err(bad("worker.tags", "must name at least one tag".into()));
        }
        for (i, t) in self.worker.tags.iter().enumerate() {
            crate::tags::check_tag(t, "worker.tags").map_err(config_error)?;
            if self.worker.tags[..i].contains(t) {
                return Err(bad("worker.tags", format!("{t:?} is named twice")));
            }
        }
        for (path, s) in &self.scripts {
            let at = format!("scripts.{path:?}");
            if let Some(cmd) = &s.command {
                if cmd.is_empty() || cmd[0].is_empty() {
                    return Err(bad(&format!("{at}.command"), "must name a program".into()));
                }
            }
            positive(s.timeout_s, &format!("{at}.timeout_s"))?;
            if s.max_attempts < 1 {
                return Err(bad(
                    &format!("{at}.max_attempts"),
                    format!("must be at least 1, got {}", s.max_attempts),
                ));
            }
            non_negative(s.backoff_s, &format!("{at}.backoff_s"))?;
            if let Some(t) = &s.tag {
                crate::tags::check_tag(t, &format!("{at}.tag")).map_err(config_error)?;
            }
            if let Some(l) = &s.concurrency {
                l.to_limit(&format!("{at}.concurrency"))?;
            }
        }
        for (path, f) in &self.flows {
            let at = format!("flows.{path:?}");
            if let Some(l) = &f.concurrency {
                l.to_limit(&format!("{at}.concurrency"))?;
            }
            if let Some(t) = &f.tag {
                crate::tags::check_tag(t, &format!("{at}.tag")).map_err(config_error)?;
            }
            if f.steps.is_empty() {
                return Err(bad(
                    &format!("{at}.steps"),
                    "a flow needs at least one step".into(),
                ));
            }
            for i in 0..f.steps.len() {
                self.validate_step(&at, i, f)?;
            }
        }
        Ok(())
    }

    /// The tag of a script's jobs run on their own.
    pub fn script_tag(&self, path: &str) -> &str {
        self.scripts
            .get(path)
            .and_then(|s| s.tag.as_deref())
            .unwrap_or(crate::keys::DEFAULT_TAG)
    }

    /// The tag of a flow's runs.
    pub fn flow_tag(&self, path: &str) -> &str {
        self.flows
            .get(path)
            .and_then(|f| f.tag.as_deref())
            .unwrap_or(crate::keys::DEFAULT_TAG)
    }

    /// The tag of a flow's step: its script's own, else the flow's.
    pub fn step_tag(&self, flow: &str, step: &StepConfig) -> &str {
        step.script
            .as_deref()
            .and_then(|p| self.scripts.get(p))
            .and_then(|s| s.tag.as_deref())
            .unwrap_or_else(|| self.flow_tag(flow))
    }

    fn validate_step(&self, flow_at: &str, i: usize, flow: &FlowConfig) -> Result<()> {
        let steps = &flow.steps;
        use crate::flow::Root;
        let bad = |setting: &str, reason: String| Error::Config(format!("{setting}: {reason}"));
        let step = &steps[i];
        let at = format!("{flow_at}.steps[{i}]");
        let earlier: Vec<&str> = steps[..i].iter().map(|s| s.id.as_str()).collect();
        if step.id.is_empty()
            || step.id.contains([':', ' ', '['])
            || earlier.contains(&step.id.as_str())
        {
            return Err(bad(
                &format!("{at}.id"),
                format!(
                    "{:?} must be non-empty, unique, without ':', '[' or spaces",
                    step.id
                ),
            ));
        }
        match (&step.script, &step.command) {
            (Some(script), None) if !self.scripts.contains_key(script) => {
                return Err(bad(
                    &format!("{at}.script"),
                    format!("{script:?} is not among the scripts"),
                ));
            }
            (Some(_), None) if step.concurrency.is_some() => {
                return Err(bad(
                    &format!("{at}.concurrency"),
                    "a step that runs a script has that script's limit".into(),
                ));
            }
            (None, Some(c)) if c.is_empty() || c[0].is_empty() => {
                return Err(bad(&format!("{at}.command"), "must name a program".into()));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(bad(
                    &at,
                    "needs exactly one of `script` and `command`".into(),
                ))
            }
        }
        if let Some(l) = &step.concurrency {
            l.to_limit(&format!("{at}.concurrency"))?;
        }
        if !(1..=MAX_BATCH).contains(&step.parallelism) {
            return Err(bad(
                &format!("{at}.parallelism"),
                format!("must be 1 to {MAX_BATCH}, got {}", step.parallelism),
            ));
        }
        positive(step.timeout_s, &format!("{at}.timeout_s"))?;
        non_negative(step.backoff_s, &format!("{at}.backoff_s"))?;
        if step.max_attempts < 1 {
            return Err(bad(
                &format!("{at}.max_attempts"),
                format!("must be at least 1, got {}", step.max_attempts),
            ));
        }
        let mut refs = Vec::new();
        if let Some(t) = &step.args {
            crate::flow::references(t, &mut refs);
        }
        if let Some(e) = &step.for_each {
            if crate::flow::parse(e).is_none() {
                return Err(bad(
                    &format!("{at}.for_each"),
                    format!("{e:?} is not a reference"),
                ));
            }
            refs.push(e.clone());
        }
        for r in refs {
            let what = format!("{at}: {r}");
            match crate::flow::parse(&r).map(|(root, _)| root) {
                None => {
                    return Err(bad(&what, "is not a reference ($flow_input, $results.<step>, $previous_result, $item, $index)".into()))
                }
                Some(Root::Result(s)) if !earlier.contains(&s.as_str()) => {
                    return Err(bad(&what, format!("names step {s:?}, which is not an earlier step")))
                }
                Some(Root::Previous) if i == 0 => return Err(bad(&what, "the first step has no previous result".into())),
                Some(Root::Item | Root::Index) if step.for_each.is_none() || step.args.is_none() => {
                    return Err(bad(&what, "only a for-each step's args have $item and $index".into()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `worker.lease_s` in whole milliseconds.
    pub fn lease_ms(&self) -> u64 {
        (self.worker.lease_s * 1000.0).round() as u64
    }
}

impl LimitConfig {
    /// Checks and converts; `at` names the setting in errors.
    pub fn to_limit(&self, at: &str) -> Result<Limit> {
        if self.max < 1 || self.max > u32::MAX as i64 {
            return Err(Error::Config(format!(
                "{at}.max: must be at least 1, got {}",
                self.max
            )));
        }
        non_negative(self.window_s, &format!("{at}.window_s"))?;
        let key = match &self.key {
            Some(k) => {
                Some(KeyTemplate::parse(k).map_err(|e| Error::Config(format!("{at}.key: {e}")))?)
            }
            None => None,
        };
        Ok(Limit {
            max: self.max as u32,
            window_ms: (self.window_s * 1000.0).round() as u64,
            key,
        })
    }
}

fn positive(v: f64, setting: &str) -> Result<()> {
    if !(v.is_finite() && v > 0.0 && v <= MAX_SECONDS) {
        return Err(Error::Config(format!(
            "{setting}: must be more than 0 and at most {MAX_SECONDS} seconds (366 days), got {v}"
        )));
    }
    Ok(())
}

fn non_negative(v: f64, setting: &str) -> Result<()> {
    if !(v.is_finite() && (0.0..=MAX_SECONDS).contains(&v)) {
        return Err(Error::Config(format!(
            "{setting}: must be 0 to {MAX_SECONDS} seconds (366 days), got {v}"
        )));
    }
    Ok(())
}

/// The config for a command-line program: `--config PATH`, else
/// `SLUICE_CONFIG`, else `./sluice.toml`. Without any of them the error says
/// so, rather than running on defaults that know no script.
pub fn load_for_cli(path: Option<&Path>) -> Result<Config> {
    let from_env = std::env::var_os("SLUICE_CONFIG").map(std::path::PathBuf::from);
    let local = Path::new("sluice.toml");
    let chosen = path
        .map(Path::to_path_buf)
        .or(from_env)
        .or_else(|| local.exists().then(|| local.to_path_buf()));
    match chosen {
        Some(p) => Config::load(Some(&p)),
        None => Err(Error::Config(
            "no config file: pass --config PATH, set SLUICE_CONFIG, or put a sluice.toml in the current directory".into(),
        )),
    }
}

/// A check's error as a config error, naming the setting.
fn config_error(e: Error) -> Error {
    match e {
        Error::Invalid { what, reason } => Error::Config(format!("{what}: {reason}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(toml: &str) -> tempfile_lite::TempToml {
        tempfile_lite::TempToml::new(toml)
    }

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config> {
        let f = file(toml);
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(Some(f.path()), env)
    }

    mod tempfile_lite {
        use super::*;
        pub struct TempToml(std::path::PathBuf);
        impl TempToml {
            pub fn new(body: &str) -> Self {
                let path =
                    std::env::temp_dir().join(format!("sluice-cfg-{}.toml", uuid::Uuid::now_v7()));
                std::fs::File::create(&path)
                    .unwrap()
                    .write_all(body.as_bytes())
                    .unwrap();
                TempToml(path)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for TempToml {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    const CONTRACT_EXAMPLE: &str = r#"
redis_url = "redis://127.0.0.1:6379"
prefix = "sluice"

[worker]
concurrency = 16
metrics_addr = "127.0.0.1:9464"

[scripts."f/crm/sync_contact"]
command = ["./sync_contact.sh"]
timeout_s = 300
concurrency = { max = 10, window_s = 60, key = "$workspace/crm/$args[account]" }

[scripts."f/crm/fetch_accounts"]
command = ["./fetch.sh"]

[flows."f/crm/nightly"]
concurrency = { max = 1, window_s = 0 }

[[flows."f/crm/nightly".steps]]
id = "fetch"
script = "f/crm/fetch_accounts"

[[flows."f/crm/nightly".steps]]
id = "sync"
command = ["./sync.sh"]
concurrency = { max = 5, window_s = 1 }
"#;

    #[test]
    fn spec_example_loads() {
        let c = load(CONTRACT_EXAMPLE, &[]).unwrap();
        assert_eq!(c.worker.concurrency, 16);
        let l = c.scripts["f/crm/sync_contact"]
            .concurrency
            .as_ref()
            .unwrap();
        let l = l.to_limit("x").unwrap();
        assert_eq!((l.max, l.window_ms), (10, 60_000));
        assert_eq!(c.flows["f/crm/nightly"].steps.len(), 2);
    }

    #[test]
    fn every_env_override_reaches_its_setting() {
        let c = load(
            CONTRACT_EXAMPLE,
            &[
                ("SLUICE_REDIS_URL", "redis://10.1.2.3:7000/2"),
                ("SLUICE_PREFIX", "other"),
                ("SLUICE_LOG_FORMAT", "json"),
                ("SLUICE_WORKER__CONCURRENCY", "3"),
                ("SLUICE_WORKER__METRICS_ADDR", "0.0.0.0:1"),
                ("SLUICE_WORKER__LEASE_S", "2.5"),
                ("SLUICE_WORKER__GRACE_S", "4"),
                ("SLUICE_RETENTION__KEEP_S", "60"),
                ("SLUICE_RETENTION__KEEP_MAX", "10"),
                ("SLUICE_RETENTION__EVERY_S", "0.5"),
                ("SLUICE_WAIT_REPLICAS", "2"),
                ("SLUICE_CONFIG", "/ignored"),
                ("SLUICE_TEST_REDIS_URL", "redis://ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.redis_url, "redis://10.1.2.3:7000/2");
        assert_eq!(c.prefix, "other");
        assert_eq!(c.replicas(), 2);
        assert_eq!(c.log_format, "json");
        assert_eq!(c.worker.concurrency, 3);
        assert_eq!(c.worker.metrics_addr.as_deref(), Some("0.0.0.0:1"));
        assert_eq!(c.worker.lease_s, 2.5);
        assert_eq!(c.worker.grace_s, 4.0);
        assert_eq!(
            (
                c.retention.keep_s,
                c.retention.keep_max,
                c.retention.every_s
            ),
            (60.0, 10, 0.5)
        );
    }

    #[test]
    fn cluster_urls_come_from_the_file_or_the_environment() {
        let c = load(
            "",
            &[("SLUICE_CLUSTER_URLS", "redis://a:7000,redis://b:7001")],
        )
        .unwrap();
        assert_eq!(c.cluster_urls, ["redis://a:7000", "redis://b:7001"]);
        assert_eq!(
            c.redis_target(),
            crate::redis_conn::Target::Cluster(c.cluster_urls.clone())
        );
        let c = load("cluster_urls = [\"redis://a:7000\"]", &[]).unwrap();
        assert_eq!(c.cluster_urls, ["redis://a:7000"]);
        let c = load("", &[]).unwrap();
        assert_eq!(
            c.redis_target(),
            crate::redis_conn::Target::Single("redis://127.0.0.1:6379".into())
        );
        // Both at once, a database other than 0, and a non-URL are refused by name.
        for (file, needle) in [
            (
                "redis_url = \"redis://x:1\"\ncluster_urls = [\"redis://a:7000\"]",
                "set only one",
            ),
            ("cluster_urls = [\"redis://a:7000/3\"]", "database 3"),
            ("cluster_urls = [\"nope\"]", "is not a Redis URL"),
        ] {
            let e = load(file, &[]).unwrap_err().to_string();
            assert!(
                e.contains("cluster_urls") && e.contains(needle),
                "{file}: {e}"
            );
        }
    }

    #[test]
    fn env_alone_without_file() {
        let env = [("SLUICE_WORKER__CONCURRENCY".to_string(), "7".to_string())].into();
        let c = Config::load_with_env(None, env).unwrap();
        assert_eq!(c.worker.concurrency, 7);
        assert_eq!(c.prefix, "sluice");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (
                "[scripts.\"a\"]\nconcurrency = { max = 0 }",
                "scripts.\"a\".concurrency.max",
            ),
            (
                "[scripts.\"a\"]\nconcurrency = { max = 1, window_s = -1 }",
                "scripts.\"a\".concurrency.window_s",
            ),
            (
                "[scripts.\"a\"]\nconcurrency = { max = 1, key = \"$args[x\" }",
                "scripts.\"a\".concurrency.key",
            ),
            ("[scripts.\"a\"]\ncommand = []", "scripts.\"a\".command"),
            ("prefix = \"a#1\"", "prefix"),
            ("partitions = 0", "partitions"),
            ("partitions = 257", "partitions"),
            ("wait_replicas = 17", "wait_replicas"),
            (
                "[scripts.\"a\"]\nmax_attempts = 0",
                "scripts.\"a\".max_attempts",
            ),
            ("[scripts.\"a\"]\ntimeout_s = 0", "scripts.\"a\".timeout_s"),
            ("[worker]\nconcurrency = 0", "worker.concurrency"),
            ("[worker]\nconcurrency = 5000", "worker.concurrency"),
            ("[worker]\nmetrics_addr = \"nope\"", "worker.metrics_addr"),
            ("[retention]\nkeep_max = -1", "retention.keep_max"),
            ("prefix = \"a{b}\"", "prefix"),
            ("redis_url = \"nope://x\"", "redis_url"),
            (
                "[flows.\"f\"]\n[[flows.\"f\".steps]]\nid = \"s\"\nscript = \"missing\"",
                "flows.\"f\".steps[0].script",
            ),
        ];
        for (toml, setting) in cases {
            let e = load(toml, &[]).unwrap_err().to_string();
            assert!(
                e.contains(setting),
                "{toml:?}: error {e:?} should name {setting}"
            );
        }
        let e = load("", &[("SLUICE_WORKER__CONCURRENCY", "-2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker.concurrency"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_naming_them() {
        let cases = [
            ("[scripts.\"a\"]\nconcurrency = { max = 2, windows_s = 60 }", "windows_s"),
            ("[scripts.\"a\"]\ncomand = [\"true\"]", "comand"),
            ("[worker]\nconcurency = 4", "concurency"),
            ("redis_ur = \"redis://x\"", "redis_ur"),
            ("[retention]\nkeep = 1", "keep"),
            (
                "[flows.\"f\"]\n[[flows.\"f\".steps]]\nid = \"s\"\ncommand = [\"true\"]\nfor_eachh = \"$flow_input\"",
                "for_eachh",
            ),
            ("[flows.\"f\"]\nstep = []", "step"),
        ];
        for (toml, key) in cases {
            let e = load(toml, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{toml:?}: {e:?} should name {key}");
        }
        // A typo in the environment is refused too...
        let e = load("", &[("SLUICE_WORKER__CONCURENCY", "4")]).unwrap_err();
        assert!(e.to_string().contains("concurency"), "{e}");
        // ...but not the variables Sluice sets for the commands it runs,
        // nor the scripts' and tests' own, nor Kubernetes' for a Service.
        let mut env: Vec<(&str, &str)> = CHILD_ENV.iter().map(|k| (*k, "x")).collect();
        env.extend([
            ("SLUICE_DEMO_BIN_DIR", "x"),
            ("SLUICE_TEST_REDIS_URL", "x"),
            ("SLUICE_SERVICE_HOST", "10.0.0.1"),
            ("SLUICE_PORT", "tcp://10.0.0.1:9464"),
            ("SLUICE_PORT_9464_TCP_ADDR", "10.0.0.1"),
        ]);
        load("", &env).unwrap();
    }

    #[test]
    fn counts_are_integers_and_durations_bounded() {
        let cases = [
            ("[scripts.\"a\"]\nconcurrency = { max = 1.5 }", "max"),
            ("[scripts.\"a\"]\nconcurrency = { max = \"2\" }", "max"),
            ("[worker]\nconcurrency = 2.0", "concurrency"),
            ("[scripts.\"a\"]\nmax_attempts = 2.5", "max_attempts"),
            (
                "[scripts.\"a\"]\nconcurrency = { max = 1, window_s = 1e300 }",
                "scripts.\"a\".concurrency.window_s",
            ),
            (
                "[scripts.\"a\"]\ntimeout_s = 1e12",
                "scripts.\"a\".timeout_s",
            ),
            ("[worker]\nlease_s = inf", "worker.lease_s"),
            ("[worker]\nlease_s = 0.05", "worker.lease_s"),
        ];
        for (toml, key) in cases {
            let e = load(toml, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{toml:?}: {e:?} should name {key}");
        }
        // An integer from the environment arrives as text, and is one.
        let c = load("", &[("SLUICE_WORKER__CONCURRENCY", "2")]).unwrap();
        assert_eq!(c.worker.concurrency, 2);
        let e = load("", &[("SLUICE_WORKER__CONCURRENCY", "2.5")]).unwrap_err();
        assert!(e.to_string().contains("concurrency"), "{e}");
    }

    #[test]
    fn worker_tags_come_from_the_file_or_the_environment() {
        assert_eq!(load("", &[]).unwrap().worker.tags, ["default"]);
        let c = load("", &[("SLUICE_WORKER__TAGS", "gpu,eu")]).unwrap();
        assert_eq!(c.worker.tags, ["gpu", "eu"]);
        let c = load("[worker]\ntags = [\"a\"]", &[]).unwrap();
        assert_eq!(c.worker.tags, ["a"]);
        let e = load("", &[("SLUICE_WORKER__TAGS", "a,a")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker.tags") && e.contains("twice"), "{e}");
        let e = load("[worker]\ntags = []", &[]).unwrap_err().to_string();
        assert!(e.contains("worker.tags"), "{e}");
        let e = load("[scripts.\"f/x\"]\ntag = \"a b\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("scripts.\"f/x\".tag"), "{e}");
    }

    #[test]
    fn a_bad_url_never_shows_its_password() {
        let e = load("redis_url = \"nope://user:hunter2@host:1\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis_url") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn missing_file_is_named() {
        let e = Config::load_with_env(Some(Path::new("/nonexistent/x.toml")), HashMap::new())
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.toml"), "{e}");
    }
}
