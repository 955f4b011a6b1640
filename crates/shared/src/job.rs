//! The job model: what a job hash holds, and how a new job is built and
//! stamped with its limit at enqueue.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Limit};
use crate::entry::Entry;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Scheduled,
    Queued,
    Waiting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Scheduled,
        Status::Queued,
        Status::Waiting,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Script,
    Flow,
    Step,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Script => "script",
            JobKind::Flow => "flow",
            JobKind::Step => "step",
        }
    }
}

/// A job as read back from Redis. Times are Redis server time, Unix ms.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: String,
    pub path: String,
    pub workspace: String,
    pub kind: String,
    pub args: Value,
    pub concurrency_key: Option<String>,
    pub max: Option<u32>,
    pub window_ms: Option<u64>,
    pub status: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub created_at: Option<i64>,
    pub ready_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// For a flow's step: the flow run's id, the step id, the for-each position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iter: Option<u32>,
}

impl Job {
    /// Builds a job from its hash and its args key (used when the args were
    /// too long to keep in the hash); `None` for an empty hash (no such job).
    pub fn from_parts(
        id: &str,
        mut h: HashMap<String, String>,
        args: Option<String>,
    ) -> Option<Job> {
        if h.is_empty() {
            return None;
        }
        let mut take = |k: &str| h.remove(k).filter(|v| !v.is_empty());
        let num = |v: Option<String>| v.and_then(|s| s.parse::<i64>().ok());
        let ckey = take("ckey");
        let args = take("args").or(args);
        Some(Job {
            id: id.to_string(),
            path: take("path").unwrap_or_default(),
            workspace: take("workspace").unwrap_or_default(),
            kind: take("kind").unwrap_or_else(|| "script".into()),
            args: args
                .map(|a| serde_json::from_str(&a).unwrap_or(Value::String(a)))
                .unwrap_or(Value::Null),
            max: num(take("max"))
                .map(|v| v as u32)
                .filter(|_| ckey.is_some()),
            window_ms: num(take("window_ms"))
                .map(|v| v as u64)
                .filter(|_| ckey.is_some()),
            concurrency_key: ckey,
            status: take("status").unwrap_or_default(),
            attempt: num(take("attempt")).unwrap_or(0) as u32,
            max_attempts: num(take("max_attempts")).unwrap_or(DEFAULT_MAX_ATTEMPTS as i64) as u32,
            created_at: num(take("created_at")),
            ready_at: num(take("ready_at")),
            started_at: num(take("started_at")),
            ended_at: num(take("ended_at")),
            result: take("result").map(|r| serde_json::from_str(&r).unwrap_or(Value::String(r))),
            error: take("error"),
            parent: take("parent"),
            step: take("step"),
            iter: num(take("iter")).map(|i| i as u32),
        })
    }

    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }
}

/// A job ready to be written by enqueue.lua: validated, its key resolved and
/// its limit stamped.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: String,
    pub path: String,
    pub workspace: String,
    pub args: String,
    pub ckey: String,
    pub limit: Option<(u32, u64)>,
    pub max_attempts: u32,
    pub delay_ms: u64,
    pub kind: JobKind,
    /// For a flow's step: the flow run, the flow's path, the step id, and the
    /// for-each position.
    pub parent: Option<StepOf>,
}

#[derive(Clone, Debug)]
pub struct StepOf {
    pub flow_id: String,
    pub flow_path: String,
    pub step: String,
    pub iter: Option<usize>,
}

/// Attempts a job gets when its script's config says nothing; a job hash
/// stamps `max_attempts` only when it differs (see slots.lua).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// What a producer asks for.
#[derive(Clone, Debug)]
pub struct JobRequest {
    pub path: String,
    pub workspace: String,
    pub args: Value,
    pub delay_ms: u64,
}

impl JobRequest {
    pub fn new(path: impl Into<String>, args: Value) -> Self {
        JobRequest {
            path: path.into(),
            workspace: "default".into(),
            args,
            delay_ms: 0,
        }
    }
}

impl NewJob {
    pub fn build(config: &Config, req: &JobRequest) -> Result<NewJob> {
        if !req.args.is_object() {
            return Err(Error::invalid(
                "args",
                format!("must be a JSON object, got {}", json_kind(&req.args)),
            ));
        }
        if req.workspace.is_empty() {
            return Err(Error::invalid("workspace", "must not be empty"));
        }
        if let Some(flow) = config.flows.get(&req.path) {
            let at = format!("flows.{:?}.concurrency", req.path);
            let limit = stamped_limit(&flow.concurrency, &at)?;
            let default_key = format!("{}/flow/{}", req.workspace, req.path);
            // A flow's driver is not retried: a failed step already had its retries.
            return NewJob::new(req, limit, default_key, 1, JobKind::Flow, None);
        }
        let script = config
            .scripts
            .get(&req.path)
            .ok_or_else(|| Error::UnknownPath(req.path.clone()))?;
        let at = format!("scripts.{:?}.concurrency", req.path);
        let limit = stamped_limit(&script.concurrency, &at)?;
        let default_key = format!("{}/script/{}", req.workspace, req.path);
        NewJob::new(
            req,
            limit,
            default_key,
            script.max_attempts as u32,
            JobKind::Script,
            None,
        )
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
        NewJob::new(
            &req,
            limit,
            default_key,
            attempts as u32,
            JobKind::Step,
            Some(step_of),
        )
    }

    fn new(
        req: &JobRequest,
        limit: Option<Limit>,
        default_key: String,
        max_attempts: u32,
        kind: JobKind,
        parent: Option<StepOf>,
    ) -> Result<NewJob> {
        let ckey = match &limit {
            Some(Limit { key: Some(t), .. }) => t.render(&req.workspace, &req.args)?,
            Some(_) => default_key,
            None => String::new(),
        };
        Ok(NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            path: req.path.clone(),
            workspace: req.workspace.clone(),
            args: req.args.to_string(),
            ckey,
            limit: limit.map(|l| (l.max, l.window_ms)),
            max_attempts,
            delay_ms: req.delay_ms,
            kind,
            parent,
        })
    }

    /// Adds this job's keys and its 14 values to an enqueue.lua or drive.lua
    /// call (see write_job in jobs.lua).
    pub fn push(&self, keys: &crate::Keys, call: &mut crate::scripts::Invocation) {
        let (max, window) = match self.limit {
            Some((m, w)) => (m.to_string(), w.to_string()),
            None => (String::new(), String::new()),
        };
        let attempts = if self.max_attempts == DEFAULT_MAX_ATTEMPTS {
            String::new()
        } else {
            self.max_attempts.to_string()
        };
        let kind = match self.kind {
            JobKind::Script => "",
            other => other.as_str(),
        };
        call.key(keys.job(&self.id))
            .key(keys.args(&self.id))
            .key(keys.idx_key(&self.ckey));
        call.arg(self.delay_ms)
            .arg(self.entry())
            .arg(&self.path)
            .arg(&self.workspace)
            .arg(&self.args)
            .arg(&self.ckey)
            .arg(max)
            .arg(window)
            .arg(attempts)
            .arg(kind);
        match &self.parent {
            Some(p) => call
                .arg(&p.flow_id)
                .arg(&p.flow_path)
                .arg(&p.step)
                .arg(p.iter.map(|i| i.to_string()).unwrap_or_default()),
            None => call.arg("").arg("").arg("").arg(""),
        };
    }

    pub fn entry(&self) -> String {
        Entry::job(&self.id, &self.ckey)
    }
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
    fn bad_input_is_refused_with_reason() {
        let e = build("f/a", json!([1])).unwrap_err().to_string();
        assert!(e.contains("args") && e.contains("an array"), "{e}");
        let e = build("f/nope", json!({})).unwrap_err().to_string();
        assert!(e.contains("f/nope"), "{e}");
        let e = build("f/a", json!({"other": 1})).unwrap_err().to_string();
        assert!(e.contains("`account`"), "{e}");
    }
}
