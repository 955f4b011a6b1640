//! The job model: what a job's records hold, and how a new job is built and
//! stamped with its limit at enqueue.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Limit};
use crate::entry::Entry;
use crate::error::{Error, Result};

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Enqueued with a delay, or waiting out a retry backoff.
    Scheduled,
    /// Ready, waiting for a worker.
    Queued,
    /// Its concurrency key is full: waiting for a slot.
    Waiting,
    /// An attempt is running on a worker.
    Running,
    /// Finished: it succeeded.
    Succeeded,
    /// Finished: it failed (the job's error says why).
    Failed,
    /// Finished: it was cancelled.
    Cancelled,
    /// Its state record is damaged (no status Sluice writes); not in
    /// [`Status::ALL`].
    Corrupt,
}

impl Status {
    /// Every status, unfinished ones first.
    pub const ALL: [Status; 7] = [
        Status::Scheduled,
        Status::Queued,
        Status::Waiting,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The status's name, as stored and shown: `queued`, `running`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Corrupt => "corrupt",
        }
    }

    /// The status named `s` (as `as_str` gives it); `None` for any other text.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job has finished: succeeded, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

/// A status compares with its name: `job.status == "succeeded"`.
impl PartialEq<&str> for Status {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A script of the config, enqueued on its own.
    Script,
    /// A flow run: its driver plans and starts the steps.
    Flow,
    /// One step (or one for-each iteration) of a flow run.
    Step,
}

impl JobKind {
    /// The kind's name, as stored in a spec and shown: `script`, `flow` or `step`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Script => "script",
            JobKind::Flow => "flow",
            JobKind::Step => "step",
        }
    }

    /// The kind a spec names (`""` is a script's).
    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "" | "script" => Some(JobKind::Script),
            "flow" => Some(JobKind::Flow),
            "step" => Some(JobKind::Step),
            _ => None,
        }
    }
}

/// A kind compares with its name: `job.kind == "flow"`.
impl PartialEq<&str> for JobKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as read back from Redis. Times are Redis server time, Unix ms.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    /// The job's id.
    pub id: crate::JobId,
    /// The path it runs (an inline step of a flow: the flow's).
    pub path: String,
    /// The job's workspace: a tenant's name.
    pub workspace: String,
    /// What it runs: a script, a flow run or a flow's step.
    pub kind: JobKind,
    /// Which workers run it: those serving this tag.
    pub tag: String,
    /// The job's input, a JSON object.
    pub args: Value,
    /// The resolved concurrency key, when the job has a limit.
    pub concurrency_key: Option<String>,
    /// The stamped limit's slots, when the job has a key.
    pub max: Option<u32>,
    /// The stamped limit's window in ms, when the job has a key.
    pub window_ms: Option<u64>,
    /// Where the job stands; [`Status::Corrupt`] for a damaged state.
    pub status: Status,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts the job gets in all.
    pub max_attempts: u32,
    /// When it was enqueued.
    pub created_at: Option<i64>,
    /// When it became ready to run (for a scheduled job: when it falls due).
    pub ready_at: Option<i64>,
    /// When its attempt started: the current one while running, the last one once finished.
    pub started_at: Option<i64>,
    /// When it finished.
    pub ended_at: Option<i64>,
    /// Its result once it succeeded (`Value::Null` for a null result).
    pub result: Option<Value>,
    /// Its last error, if any (also while a retry is pending).
    pub error: Option<String>,
    /// For a flow's step: the flow run's id, the step id, the for-each position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a flow's step: the step id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For a for-each iteration: its position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iter: Option<u32>,
}

impl Job {
    /// Builds a job from its three records (see keys.rs): its spec, its
    /// state and its result or error; `None` when it has neither spec nor
    /// state (no such job).
    pub fn from_records(
        id: &str,
        spec: Option<String>,
        state: Option<String>,
        result: Option<String>,
    ) -> Option<Job> {
        if spec.is_none() && state.is_none() {
            return None;
        }
        let spec = spec
            .as_deref()
            .and_then(|s| serde_json::from_str::<Spec>(s).ok())
            .unwrap_or_default();
        // A malformed state reads as status "corrupt", as the scripts see it.
        let st = match state.as_deref() {
            None => State::default(),
            Some(s) => State::parse(s).unwrap_or_else(|| State {
                status: "corrupt".into(),
                ..State::default()
            }),
        };
        let status = Status::parse(&st.status).unwrap_or(Status::Corrupt);
        let finished = status.is_final();
        let since = Some(st.since).filter(|&t| t > 0);
        let limited = !spec.ckey.is_empty();
        Some(Job {
            id: crate::JobId::from_stored(id.to_string()),
            path: spec.path,
            workspace: spec.workspace,
            // An unknown kind is a damaged spec; it runs as a script would.
            kind: JobKind::parse(&spec.kind).unwrap_or(JobKind::Script),
            tag: spec
                .tag
                .unwrap_or_else(|| crate::keys::DEFAULT_TAG.to_string()),
            args: spec.args,
            max: spec.max.filter(|_| limited),
            window_ms: spec.window_ms.filter(|_| limited),
            concurrency_key: limited.then_some(spec.ckey),
            attempt: st.attempt,
            max_attempts: spec.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            created_at: Some(spec.created_at).filter(|&t| t > 0),
            ready_at: if matches!(status, Status::Queued | Status::Scheduled) {
                since
            } else {
                st.ready.or(Some(spec.created_at).filter(|&t| t > 0))
            },
            started_at: if finished {
                st.started
            } else {
                since.filter(|_| status == Status::Running)
            },
            ended_at: since.filter(|_| finished),
            // A null result is not stored.
            result: (status == Status::Succeeded).then(|| {
                result
                    .clone()
                    .map(|r| serde_json::from_str(&r).unwrap_or(Value::String(r)))
                    .unwrap_or(Value::Null)
            }),
            error: result.filter(|_| status != Status::Succeeded),
            parent: Some(spec.parent).filter(|p| !p.is_empty()),
            step: Some(spec.step).filter(|s| !s.is_empty()),
            iter: spec.iter,
            status,
        })
    }
}

/// A job's spec as stored in `{p}:jobs`: what it runs, written once.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Spec {
    /// When it was enqueued, Unix ms (Redis time, written by the script).
    #[serde(default)]
    pub created_at: i64,
    /// The path it runs.
    #[serde(default)]
    pub path: String,
    /// The job's workspace: a tenant's name.
    #[serde(default)]
    pub workspace: String,
    /// The stamped concurrency key; "" for none.
    #[serde(default)]
    pub ckey: String,
    /// The stamped limit's slots.
    pub max: Option<u32>,
    /// The stamped limit's window, in ms.
    pub window_ms: Option<u64>,
    /// Attempts the job gets, when not [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: Option<u32>,
    /// "flow", "step", or "" for a script's job.
    #[serde(default)]
    pub kind: String,
    /// For a flow's step: the flow run's id, the flow's path, the step id and
    /// the for-each position.
    #[serde(default)]
    pub parent: String,
    /// For a flow's step: the flow's path.
    #[serde(default)]
    pub flow: String,
    /// For a flow's step: the step id.
    #[serde(default)]
    pub step: String,
    /// For a for-each iteration: its position.
    pub iter: Option<u32>,
    /// Its tag, when not [`crate::keys::DEFAULT_TAG`].
    pub tag: Option<String>,
    /// The job's input, a JSON object; stored last.
    #[serde(default)]
    pub args: Value,
}

impl Spec {
    /// The fields before `args`, read as the scripts read them (spec_of in
    /// records.lua): what is left of a spec whose args cannot be parsed.
    pub fn head_of(raw: &str) -> Option<Spec> {
        let cut = raw.find(",\"args\":")?;
        serde_json::from_str(&format!("{}}}", &raw[..cut])).ok()
    }
}

pub use crate::state::State;

/// A job ready to be written by enqueue.lua: validated, its key resolved and
/// its limit stamped.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// A new id.
    pub id: crate::JobId,
    /// The path it runs (an inline step of a flow: the flow's).
    pub path: String,
    /// The job's workspace: a tenant's name.
    pub workspace: String,
    /// The args, as JSON text.
    pub args: String,
    /// The resolved concurrency key (a flow run's with its `flow:` prefix); "" for none.
    pub ckey: String,
    /// The stamped limit: its slots and its window in ms.
    pub limit: Option<(u32, u64)>,
    /// Attempts the job gets in all.
    pub max_attempts: u32,
    /// How long from now until it is due, in ms; 0 for at once.
    pub delay_ms: u64,
    /// A script's job, a flow run or a step.
    pub kind: JobKind,
    /// For a flow's step: the flow run, the flow's path, the step id, and the
    /// for-each position.
    pub parent: Option<StepOf>,
    /// The caller's idempotency key, checked.
    pub idempotency_key: Option<String>,
    /// Which workers run it: its script's tag, or for a step its flow's
    /// when the script names none.
    pub tag: String,
}

/// Which flow run a step's job belongs to, and where in it.
#[derive(Clone, Debug)]
pub struct StepOf {
    /// The flow run's id.
    pub flow_id: String,
    /// The flow's path.
    pub flow_path: String,
    /// The step's id.
    pub step: String,
    /// The position in a for-each step; `None` for any other step.
    pub iter: Option<usize>,
}

pub use crate::config::DEFAULT_MAX_ATTEMPTS;

/// What a producer asks for.
#[derive(Clone, Debug)]
pub struct JobRequest {
    /// What to run: a key of the config's `[scripts]` or `[flows]`.
    pub path: String,
    /// The job's workspace: a tenant's name; `default` from
    /// [`JobRequest::new`].
    pub workspace: String,
    /// The job's input; it must be a JSON object.
    pub args: Value,
    /// Run no earlier than this many ms from now; 0 from [`JobRequest::new`].
    pub delay_ms: u64,
    /// The caller's key for this request: the same key within the
    /// retention period (`retention.keep_s`) gives back the first job's id
    /// and writes nothing new, so a producer may safely retry an enqueue
    /// whose reply it never got.
    pub idempotency_key: Option<String>,
}

impl JobRequest {
    /// A request to run `path` with `args` in workspace `default`, at once.
    pub fn new(path: impl Into<String>, args: Value) -> Self {
        JobRequest {
            path: path.into(),
            workspace: "default".into(),
            args,
            delay_ms: 0,
            idempotency_key: None,
        }
    }

    /// In this workspace (default `default`).
    pub fn workspace(mut self, workspace: impl Into<String>) -> Self {
        self.workspace = workspace.into();
        self
    }

    /// To run no earlier than `delay` from now (whole milliseconds).
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.delay_ms = delay.as_millis() as u64;
        self
    }

    /// With the caller's idempotency key (see the field).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl NewJob {
    /// Builds the job a producer's request asks for, checked against the
    /// config: its key resolved and its limit stamped. For a flow, the keys of
    /// the steps its input alone decides are checked too. Nothing is written.
    pub fn build(config: &Config, req: &JobRequest) -> Result<NewJob> {
        if let Some(flow) = config.flows.get(&req.path) {
            let at = format!("flows.{:?}.concurrency", req.path);
            let limit = stamped_limit(&flow.concurrency, &at)?;
            let default_key = format!("{}/{}", req.workspace, req.path);
            // A flow's driver is not retried: a failed step already had its retries.
            let mut job = NewJob::new(req, limit, default_key, 1, JobKind::Flow, None)?;
            job.tag = config.flow_tag(&req.path).to_string();
            check_steps_at_enqueue(config, &req.path, flow, &job, &req.args)?;
            return Ok(job);
        }
        let script = config
            .scripts
            .get(&req.path)
            .ok_or_else(|| Error::UnknownPath(req.path.clone()))?;
        let at = format!("scripts.{:?}.concurrency", req.path);
        let limit = stamped_limit(&script.concurrency, &at)?;
        let default_key = format!("{}/script/{}", req.workspace, req.path);
        let mut job = NewJob::new(
            req,
            limit,
            default_key,
            script.max_attempts as u32,
            JobKind::Script,
            None,
        )?;
        job.tag = config.script_tag(&req.path).to_string();
        Ok(job)
    }

    /// A job for one step (or one for-each iteration) of a flow run.
    pub fn step(config: &Config, step_of: StepOf, workspace: &str, args: Value) -> Result<NewJob> {
        let flow = config
            .flows
            .get(&step_of.flow_path)
            .ok_or_else(|| Error::UnknownPath(step_of.flow_path.clone()))?;
        let (i, step) = flow
            .steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.id == step_of.step)
            .ok_or_else(|| {
                Error::invalid(
                    format!("flow {:?}", step_of.flow_path),
                    format!("has no step {:?}", step_of.step),
                )
            })?;
        let mut req = JobRequest::new(step_of.flow_path.clone(), args);
        req.workspace = workspace.to_string();
        let (limit, default_key, attempts) = match &step.script {
            Some(script_path) => {
                // The script's own limit and key: shared with its standalone runs.
                let script = &config.scripts[script_path];
                req.path = script_path.clone();
                let at = format!("scripts.{script_path:?}.concurrency");
                let limit = stamped_limit(&script.concurrency, &at)?;
                (
                    limit,
                    format!("{workspace}/script/{script_path}"),
                    script.max_attempts,
                )
            }
            None => {
                let at = format!("flows.{:?}.steps[{i}].concurrency", step_of.flow_path);
                let limit = stamped_limit(&step.concurrency, &at)?;
                (
                    limit,
                    format!("{workspace}/script/{}/{}", step_of.flow_path, step.id),
                    step.max_attempts,
                )
            }
        };
        let tag = config.step_tag(&step_of.flow_path, step).to_string();
        let mut job = NewJob::new(
            &req,
            limit,
            default_key,
            attempts as u32,
            JobKind::Step,
            Some(step_of),
        )?;
        job.tag = tag;
        Ok(job)
    }

    fn new(
        req: &JobRequest,
        limit: Option<Limit>,
        default_key: String,
        max_attempts: u32,
        kind: JobKind,
        parent: Option<StepOf>,
    ) -> Result<NewJob> {
        check_args(&req.args)?;
        check_workspace(&req.workspace)?;
        if req.delay_ms as f64 > crate::config::MAX_SECONDS * 1000.0 {
            return Err(Error::invalid(
                "delay",
                format!(
                    "{} ms is more than {} s (366 days)",
                    req.delay_ms,
                    crate::config::MAX_SECONDS
                ),
            ));
        }
        let mut ckey = match &limit {
            Some(Limit { key: Some(t), .. }) => t.render(&req.workspace, &req.args)?,
            Some(_) if default_key.len() > crate::template::MAX_KEY_BYTES => {
                return Err(Error::invalid(
                    "concurrency key",
                    format!(
                        "the default key {default_key:?} is longer than {} bytes",
                        crate::template::MAX_KEY_BYTES
                    ),
                ))
            }
            Some(_) => default_key,
            None => String::new(),
        };
        // Flow runs' keys are a space of their own: a flow's limit counts
        // runs, never executions, so a step can never wait on a slot that a
        // parked run holds, and runs cannot deadlock one another.
        if kind == JobKind::Flow && !ckey.is_empty() {
            ckey = format!("{FLOW_KEY_PREFIX}{ckey}");
        } else if ckey.starts_with(FLOW_KEY_PREFIX) {
            return Err(Error::invalid(
                "concurrency key",
                format!("{ckey:?}: keys beginning with {FLOW_KEY_PREFIX:?} belong to flow runs"),
            ));
        }
        let args = req.args.to_string();
        if args.len() > MAX_ARGS_BYTES {
            return Err(Error::invalid(
                "args",
                format!(
                    "are {} bytes as JSON, more than {MAX_ARGS_BYTES}",
                    args.len()
                ),
            ));
        }
        if let Some(k) = &req.idempotency_key {
            check_idempotency_key(k)?;
        }
        Ok(NewJob {
            idempotency_key: req.idempotency_key.clone(),
            id: crate::JobId::new(),
            path: req.path.clone(),
            workspace: req.workspace.clone(),
            args,
            ckey,
            limit: limit.map(|l| (l.max, l.window_ms)),
            max_attempts,
            delay_ms: req.delay_ms,
            kind,
            parent,
            tag: crate::keys::DEFAULT_TAG.to_string(),
        })
    }

    /// Adds this job's 7 values to an enqueue.lua, enqueue_once.lua or
    /// drive.lua call (see write_job in jobs.lua).
    pub fn push(&self, call: &mut crate::scripts::Invocation) {
        for v in self.values() {
            call.arg(v);
        }
    }

    /// Its 7 values as write_job in jobs.lua takes them: id, delay_ms, key,
    /// max, window_ms, tag, and the spec after its created_at.
    pub fn values(&self) -> [String; 7] {
        let (max, window) = match self.limit {
            Some((m, w)) => (m.to_string(), w.to_string()),
            None => (String::new(), String::new()),
        };
        [
            self.id.to_string(),
            self.delay_ms.to_string(),
            self.ckey.clone(),
            max,
            window,
            self.tag.clone(),
            self.spec_tail(),
        ]
    }

    /// The limit (max, window_ms) shared by every job of `jobs` when all are
    /// ready at once, keyed and of one tag: enqueue.lua writes such a batch
    /// from each job's id, key and spec (its "keyed" form).
    pub fn keyed_batch(jobs: &[&NewJob]) -> Option<(u32, u64)> {
        let first = jobs.first()?;
        let limit = first.limit?;
        jobs.iter()
            .all(|j| {
                j.delay_ms == 0
                    && !j.ckey.is_empty()
                    && j.limit == Some(limit)
                    && j.tag == first.tag
            })
            .then_some(limit)
    }

    /// Ready at once and without a concurrency key: enqueue.lua writes such
    /// jobs from their id and spec alone.
    pub fn is_plain(&self) -> bool {
        self.ckey.is_empty() && self.delay_ms == 0
    }

    /// The spec after its `created_at`, which the script writes from Redis
    /// time: `"path":...,"args":{...}}`. Fields at their default are left
    /// out, the kind (when not a script) comes first and args last
    /// (records.lua reads the fields before them).
    pub fn spec_tail(&self) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        // The kind first: admit.lua tells a flow from its spec's first bytes.
        let mut out = String::new();
        if self.kind != JobKind::Script {
            out += &format!("\"kind\":{},", q(self.kind.as_str()));
        }
        out += &format!(
            "\"path\":{},\"workspace\":{}",
            q(&self.path),
            q(&self.workspace)
        );
        if let Some((max, window)) = self.limit {
            out += &format!(
                ",\"ckey\":{},\"max\":{max},\"window_ms\":{window}",
                q(&self.ckey)
            );
        }
        if self.max_attempts != DEFAULT_MAX_ATTEMPTS {
            out += &format!(",\"max_attempts\":{}", self.max_attempts);
        }
        // The scripts read it without decoding (tag_of in queues.lua).
        if self.tag != crate::keys::DEFAULT_TAG {
            out += &format!(",\"tag\":{}", q(&self.tag));
        }
        if let Some(p) = &self.parent {
            out += &format!(
                ",\"parent\":{},\"flow\":{},\"step\":{}",
                q(&p.flow_id),
                q(&p.flow_path),
                q(&p.step)
            );
            if let Some(i) = p.iter {
                out += &format!(",\"iter\":{i}");
            }
        }
        out += &format!(",\"args\":{}}}", self.args);
        out
    }

    /// The job's queue entry: its id, then its concurrency key if it has one.
    pub fn entry(&self) -> String {
        Entry::job(&self.id, &self.ckey)
    }
}

/// Plans, at enqueue, the key of every step of a flow whose args the flow's
/// input alone decides (no args template, or one that names only
/// `$flow_input`), so that a key naming a missing argument or a bad key is
/// refused before anything is written. Steps that depend on
/// earlier results are checked when the run plans them, and fail the run.
fn check_steps_at_enqueue(
    config: &Config,
    path: &str,
    flow: &crate::config::FlowConfig,
    run: &NewJob,
    input: &Value,
) -> Result<()> {
    use crate::flow::{fill, parse, references, Root, Scope};
    let none = |_: &str| None;
    for step in flow.steps.iter().filter(|s| s.for_each.is_none()) {
        let args = match &step.args {
            None => input.clone(),
            Some(t) => {
                let mut refs = Vec::new();
                references(t, &mut refs);
                let input_only = refs
                    .iter()
                    .all(|r| matches!(parse(r), Some((Root::FlowInput, _)) | None));
                if !input_only {
                    continue;
                }
                let scope = Scope {
                    flow_input: input,
                    result: &none,
                    previous_step: None,
                    item: None,
                };
                // An args reference that does not resolve fails the run when
                // it plans the step, naming it; only keys are checked here.
                match fill(t, &scope) {
                    Ok(args) => args,
                    Err(_) => continue,
                }
            }
        };
        let of = StepOf {
            flow_id: run.id.to_string(),
            flow_path: path.to_string(),
            step: step.id.clone(),
            iter: None,
        };
        let at = || format!("flow {path:?} step {}", step.id);
        NewJob::step(config, of, &run.workspace, args)
            .map_err(|e| Error::invalid(at(), e.to_string()))?;
    }
    Ok(())
}

/// What every flow run's concurrency key begins with, and no other key may.
pub const FLOW_KEY_PREFIX: &str = "flow:";

/// The most bytes a job's args take as JSON: 1 MiB.
pub const MAX_ARGS_BYTES: usize = 1 << 20;
/// The deepest nesting of arrays and objects in a job's args. serde_json
/// reads up to 128 levels; a margin keeps every reader (the worker, the
/// command line, Lua's cjson) able to read what was accepted.
pub const MAX_ARGS_DEPTH: usize = 64;
/// The longest workspace name, in bytes.
pub const MAX_WORKSPACE_BYTES: usize = 128;

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

fn check_idempotency_key(k: &str) -> Result<()> {
    crate::template::check_text("idempotency key", k, MAX_IDEMPOTENCY_KEY_BYTES)
}

fn check_workspace(w: &str) -> Result<()> {
    crate::template::check_text("workspace", w, MAX_WORKSPACE_BYTES)
}

/// Args must be an object nested at most MAX_ARGS_DEPTH deep.
fn check_args(args: &Value) -> Result<()> {
    if !args.is_object() {
        return Err(Error::invalid(
            "args",
            format!("must be a JSON object, got {}", json_kind(args)),
        ));
    }
    // Iterative, so that a crafted value cannot overflow the stack here.
    let mut stack = vec![(args, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_ARGS_DEPTH {
            return Err(Error::invalid(
                "args",
                format!("are nested more than {MAX_ARGS_DEPTH} levels deep"),
            ));
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, depth + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// A limit setting as a job stamps it; `at` names the setting in errors.
fn stamped_limit(cfg: &Option<crate::config::LimitConfig>, at: &str) -> Result<Option<Limit>> {
    cfg.as_ref().map(|l| l.to_limit(at)).transpose()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn config() -> Config {
        let mut scripts = BTreeMap::new();
        let toml = r#"
[scripts."f/a"]
command = ["true"]
concurrency = { max = 2, window_s = 1.5, key = "$workspace/acct/$args[account]" }
[scripts."f/b"]
command = ["true"]
concurrency = { max = 1 }
[scripts."f/free"]
command = ["true"]
"#;
        let c: Config = toml_from(toml);
        scripts.extend(c.scripts.clone());
        c
    }

    fn toml_from(s: &str) -> Config {
        config::Config::builder()
            .add_source(config::File::from_str(s, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    fn build(path: &str, args: Value) -> Result<NewJob> {
        let mut req = JobRequest::new(path, args);
        req.workspace = "acme".into();
        NewJob::build(&config(), &req)
    }

    #[test]
    fn stamps_limit_and_key() {
        let j = build("f/a", json!({"account": 42})).unwrap();
        assert_eq!(j.ckey, "acme/acct/42");
        assert_eq!(j.limit, Some((2, 1500)));
        assert_eq!(j.id.len(), 36);
        assert_eq!(uuid::Uuid::parse_str(&j.id).unwrap().get_version_num(), 7);
        assert_eq!(build("f/b", json!({})).unwrap().ckey, "acme/script/f/b");
        assert_eq!(build("f/free", json!({})).unwrap().ckey, "");
    }

    #[test]
    fn records_read_back_as_a_job() {
        let j = build(
            "f/a",
            json!({"account": 42, "note": "a \"quoted\" ,\"args\": text"}),
        )
        .unwrap();
        let spec = format!("{{\"created_at\":1700000000000,{}", j.spec_tail());
        let parsed: Spec = serde_json::from_str(&spec).unwrap();
        assert_eq!(parsed.ckey, "acme/acct/42");
        assert_eq!((parsed.max, parsed.window_ms), (Some(2), Some(1500)));
        assert_eq!(parsed.args["note"], "a \"quoted\" ,\"args\": text");
        let state = "succeeded 2 1700000000900 started=1700000000500".to_string();
        let job =
            Job::from_records(&j.id, Some(spec), Some(state), Some("{\"ok\":1}".into())).unwrap();
        assert_eq!(job.status, "succeeded");
        assert_eq!(job.attempt, 2);
        assert_eq!(job.created_at, Some(1700000000000));
        assert_eq!(job.started_at, Some(1700000000500));
        assert_eq!(job.ended_at, Some(1700000000900));
        assert_eq!(job.result, Some(json!({"ok": 1})));
        assert_eq!(job.error, None);
        assert_eq!(job.concurrency_key.as_deref(), Some("acme/acct/42"));
        let st = State::parse("running 1 5 drive=parked cancel").unwrap();
        assert_eq!((st.drive.as_deref(), st.cancel), (Some("parked"), true));
        let damaged = Job::from_records("x", None, Some("running one 5".into()), None).unwrap();
        assert_eq!(damaged.status, "corrupt");
        assert!(Job::from_records("x", None, None, None).is_none());
    }

    #[test]
    fn bad_input_is_refused_with_reason() {
        let e = build("f/a", json!([1])).unwrap_err().to_string();
        assert!(e.contains("args") && e.contains("an array"), "{e}");
        let e = build("f/nope", json!({})).unwrap_err().to_string();
        assert!(e.contains("f/nope"), "{e}");
        let e = build("f/a", json!({"other": 1})).unwrap_err().to_string();
        assert!(e.contains("`account`"), "{e}");
    }
}
