//! `sluice`: the producer's command line (docs/contract.md).
//!
//! Exit codes, each with one meaning: 0 success; 1 `wait`: a job failed or
//! was cancelled; 2 bad usage (clap's own code); 3 any error (bad input, bad
//! config, Redis down); 4 `wait` timed out.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod progress;
use sluice_producer::when;

/// A line to standard output. A closed or broken standard output (a pipe
/// whose reader is gone) is an error, exit 3, never a panic: the ids or
/// results it was to carry did not reach anyone.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(stdout_error)?
    }};
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::invalid("standard output", e.to_string())
}
use serde_json::Value;
use sluice_producer::{
    CancelOutcome, Client, Config, Error, Job, JobKind, JobRequest, Result, RetryOutcome,
    RunsQuery, Status,
};

/// Shown under every `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  wait: a job failed or was cancelled (or an id is unknown)
  2  usage error: an unknown command, flag or value
  3  error: bad input, bad config, Redis unreachable (bad input writes
     nothing; a batch that Redis stops part way prints the ids it wrote)
  4  wait: timed out before every job finished

Config: --config PATH, else $SLUICE_CONFIG, else ./sluice.toml. Settings can be
overridden from the environment: SLUICE_REDIS_URL, SLUICE_WORKER__CONCURRENCY...";

/// The values `--status` takes.
const STATUSES: [&str; 7] = [
    "scheduled",
    "queued",
    "waiting",
    "running",
    "succeeded",
    "failed",
    "cancelled",
];

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Enqueue, wait for and inspect Sluice jobs",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Config file (TOML); else $SLUICE_CONFIG, else ./sluice.toml.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enqueue one job (prints its id), or a batch with --batch (one id a line).
    ///
    /// The input is checked in full before Redis is contacted: bad input
    /// exits 3 and writes nothing.
    #[command(after_help = EXIT_CODES)]
    Enqueue {
        /// The script's or flow's path, as in the config.
        #[arg(required_unless_present = "batch")]
        path: Option<String>,
        /// The tenant the job belongs to.
        #[arg(long, default_value = "default", conflicts_with = "batch")]
        workspace: String,
        /// The job's args: one JSON object.
        #[arg(
            long,
            default_value = "{}",
            conflicts_with = "batch",
            value_name = "JSON"
        )]
        args: String,
        /// Run no earlier than this many seconds from now.
        #[arg(
            long,
            conflicts_with = "batch",
            allow_negative_numbers = true,
            value_name = "SECONDS",
            value_parser = parse_seconds
        )]
        delay_s: Option<f64>,
        /// A file of JSON objects, one a line: {"path", "workspace", "args",
        /// "delay_s", "idempotency_key"}; - for stdin. Any bad line refuses
        /// the whole batch.
        #[arg(long, conflicts_with = "path", value_name = "FILE")]
        batch: Option<PathBuf>,
        /// The caller's key for this request: the same key within the
        /// retention period prints the first job's id and enqueues nothing,
        /// so a retried enqueue is safe.
        #[arg(long, conflicts_with = "batch", value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Wait for jobs (all of the namespace's when no id is given) to finish.
    #[command(after_help = EXIT_CODES)]
    Wait {
        /// Job ids to wait for; none: every job of the namespace.
        ids: Vec<String>,
        /// Give up after this many seconds (exit 4); default: wait forever.
        #[arg(long, allow_negative_numbers = true, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout_s: Option<f64>,
    },
    /// Show one job, with its result or error.
    #[command(after_help = EXIT_CODES)]
    Status {
        /// The job's id, as enqueue printed it.
        id: String,
        /// One JSON object, times in Unix ms.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job or flow run that has not finished.
    #[command(after_help = EXIT_CODES)]
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Pause a concurrency key: none of its jobs is admitted until the pause
    /// ends (running ones go on; other keys are not held up).
    #[command(after_help = EXIT_CODES)]
    Pause {
        /// The concurrency key, as `limits` shows it.
        key: String,
        /// How long, from now (Redis time).
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        for_s: f64,
    },
    /// End a key's pause at once.
    #[command(after_help = EXIT_CODES)]
    Resume {
        /// The concurrency key.
        key: String,
    },
    /// Put a failed or cancelled job back, as a new attempt under its limit.
    #[command(after_help = EXIT_CODES)]
    Retry {
        /// The job's id.
        id: String,
    },
    /// List jobs, newest first; the filters combine.
    #[command(after_help = EXIT_CODES)]
    Runs {
        /// Only jobs of this concurrency key.
        #[arg(long, value_name = "KEY")]
        concurrency_key: Option<String>,
        /// Only jobs in this status.
        #[arg(long, value_parser = STATUSES)]
        status: Option<String>,
        /// Only jobs of this script's or flow's path.
        #[arg(long)]
        path: Option<String>,
        /// Only jobs of this workspace.
        #[arg(long)]
        workspace: Option<String>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        /// One JSON object a line, times in Unix ms.
        #[arg(long)]
        json: bool,
    },
    /// Serve the dashboard: runs by key, keys at a glance, jobs, and
    /// actions (cancel, retry, pause, resume). Stops on Ctrl-C or SIGTERM.
    #[command(after_help = EXIT_CODES)]
    Ui {
        /// host:port to listen on; default `[ui] listen` (127.0.0.1:8080).
        /// Beyond loopback a token is required (`[ui] token` or
        /// SLUICE_UI_TOKEN), and every request must carry it.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Show each concurrency key in use (from the admission of one of its
    /// jobs until it is idle): its limit, slots held, jobs waiting; or set a
    /// key's limit at run time (`limits set`, `unset`).
    #[command(after_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
    Limits {
        #[command(subcommand)]
        action: Option<LimitsAction>,
        /// Only this key.
        key: Option<String>,
        /// One JSON object a line, times in Unix ms.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LimitsAction {
    /// Set a key's limit from now on: it wins over the limit stamped on every
    /// job of the key, waiting or future, until `unset`. Lowering it stops no
    /// running job; raising it admits waiters at once.
    #[command(after_help = EXIT_CODES)]
    Set {
        /// The concurrency key.
        key: String,
        /// Slots of the key.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max: u32,
        /// How long a slot stays held after its execution ends.
        #[arg(long, default_value = "0", value_name = "SECONDS", value_parser = parse_seconds)]
        window_s: f64,
    },
    /// Remove a key's run-time limit: its jobs' stamped limits apply again.
    #[command(after_help = EXIT_CODES)]
    Unset {
        /// The concurrency key.
        key: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::from(3)
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let config = sluice_shared::config::load_for_cli(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::Enqueue {
            path,
            workspace,
            args,
            delay_s,
            batch,
            idempotency_key,
        } => {
            let reqs = match batch {
                Some(file) => read_batch(&file, &config)?,
                None => {
                    let req = single_request(
                        path.unwrap_or_default(),
                        workspace,
                        &args,
                        delay_s,
                        idempotency_key,
                    )?;
                    sluice_shared::job::NewJob::build(&config, &req)?;
                    vec![req]
                }
            };
            // Input is checked before connecting: a bad file is reported as
            // such even when Redis is down too.
            let client = Client::connect(config).await?;
            let mut out = std::io::stdout().lock();
            match client.enqueue_batch(&reqs).await {
                Ok(ids) => {
                    // The jobs are enqueued whatever happens to stdout: if
                    // their ids cannot go there, the error carries them.
                    let printed = ids.iter().try_for_each(|id| writeln!(out, "{id}"));
                    printed.map_err(|e| {
                        Error::invalid(
                            "standard output",
                            format!("{e}; the jobs were enqueued: {}", ids.join(" ")),
                        )
                    })?;
                    Ok(0)
                }
                // The jobs written before the failure are real: their ids
                // are printed, so that the caller can tell which they are;
                // those that may have been written follow, marked "? ".
                Err(Error::PartlyEnqueued {
                    written,
                    in_doubt,
                    source,
                }) => {
                    for id in &written {
                        writeln!(out, "{id}").map_err(stdout_error)?;
                    }
                    for id in &in_doubt {
                        writeln!(out, "? {id}").map_err(stdout_error)?;
                    }
                    Err(Error::PartlyEnqueued {
                        written,
                        in_doubt,
                        source,
                    })
                }
                Err(e) => Err(e),
            }
        }
        Cmd::Ui { listen } => {
            let addr =
                match listen {
                    Some(a) => a,
                    None => config.ui.listen.parse().map_err(|e| {
                        Error::Config(format!("ui.listen {:?}: {e}", config.ui.listen))
                    })?,
                };
            let token = std::env::var("SLUICE_UI_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .or_else(|| config.ui.token.clone());
            if let Some(t) = &token {
                // The variable bypasses the config's checks: the same rule.
                let mut checked = config.clone();
                checked.ui.token = Some(t.clone());
                checked.validate()?;
            }
            sluice_producer::ui::check_listen(addr, token.as_deref())?;
            let client = Client::connect(config).await?;
            sluice_producer::ui::serve(client, addr, token, shutdown_signal()).await?;
            Ok(0)
        }
        Cmd::Wait { ids, timeout_s } => {
            let timeout = timeout_s.map(|s| seconds("--timeout-s", s)).transpose()?;
            let client = Client::connect(config).await?;
            let mut display = progress::Display::new();
            let out = if ids.is_empty() {
                client
                    .wait_all_with_progress(timeout, |p| display.update(p))
                    .await?
            } else {
                client
                    .wait_with_progress(&ids, timeout, |p| display.update(p))
                    .await?
            };
            display.finish();
            eprintln!(
                "{} succeeded, {} failed, {} cancelled{}{}",
                out.succeeded,
                out.failed,
                out.cancelled,
                if out.timed_out {
                    format!(", {} unfinished (timed out)", out.unfinished)
                } else {
                    String::new()
                },
                if out.missing.is_empty() {
                    String::new()
                } else {
                    format!(", unknown ids: {}", out.missing.join(" "))
                },
            );
            Ok(out.exit_code() as u8)
        }
        Cmd::Status { id, json } => {
            let client = Client::connect(config).await?;
            let job = client.job(&id).await?.ok_or(Error::JobNotFound(id))?;
            let steps = if job.kind == JobKind::Flow {
                client.flow_steps(&job.id, &job.path).await?
            } else {
                vec![]
            };
            if json {
                let mut v = serde_json::to_value(&job).expect("job serializes");
                if job.kind == JobKind::Flow {
                    v["steps"] = serde_json::to_value(&steps).expect("steps serialize");
                }
                outln!("{v}");
            } else {
                print_job(&job)?;
                for s in &steps {
                    let progress = match (s.done, s.total) {
                        (Some(d), Some(t)) => format!(" ({d}/{t})"),
                        _ => String::new(),
                    };
                    let result = s
                        .result
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    outln!("  step {:<16} {}{progress}{result}", s.id, s.status);
                }
            }
            Ok(0)
        }
        Cmd::Runs {
            concurrency_key,
            status,
            path,
            workspace,
            limit,
            json,
        } => {
            // clap has checked it against STATUSES.
            let status = status.as_deref().and_then(Status::parse);
            let client = Client::connect(config).await?;
            let q = RunsQuery {
                concurrency_key,
                status,
                path,
                workspace,
                limit,
                scan_limit: None,
            };
            let jobs = client.runs(&q).await?;
            let mut out = std::io::stdout().lock();
            if json {
                for j in &jobs {
                    writeln!(out, "{}", run_json(j)).map_err(stdout_error)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<9}  {:<24}  {:<10}  {:<24}  {:>12}  {:>9}",
                    "ID", "STATUS", "PATH", "WORKSPACE", "CONCURRENCY KEY", "CREATED", "RAN FOR"
                )
                .map_err(stdout_error)?;
                let now = when::now_ms();
                for j in &jobs {
                    let ran = match (j.started_at, j.ended_at) {
                        (Some(s), Some(e)) => when::duration((e - s).max(0) as u64),
                        _ => "-".into(),
                    };
                    let created = j.created_at.map(|t| when::age(now - t)).unwrap_or_default();
                    writeln!(
                        out,
                        "{:<36}  {:<9}  {:<24}  {:<10}  {:<24}  {:>12}  {:>9}",
                        j.id,
                        j.status,
                        j.path,
                        j.workspace,
                        j.concurrency_key.as_deref().unwrap_or("-"),
                        created,
                        ran
                    )
                    .map_err(stdout_error)?;
                }
            }
            Ok(0)
        }
        Cmd::Limits {
            action: Some(action),
            ..
        } => {
            let client = Client::connect(config).await?;
            match action {
                LimitsAction::Set { key, max, window_s } => {
                    client
                        .set_limit(&key, max, Duration::from_secs_f64(window_s))
                        .await?;
                    outln!("{key}: max {max} per {window_s} s, until `limits unset`");
                }
                LimitsAction::Unset { key } => {
                    client.unset_limit(&key).await?;
                    outln!("{key}: back to its jobs' stamped limits");
                }
            }
            Ok(0)
        }
        Cmd::Limits {
            action: None,
            key,
            json,
        } => {
            let client = Client::connect(config).await?;
            let states = client.limits(key.as_deref()).await?;
            if key.is_some() && states.is_empty() {
                return Err(Error::invalid(
                    "key",
                    format!(
                        "{:?} is not a concurrency key in use (none of its jobs admitted yet, or idle and pruned)",
                        key.unwrap_or_default()
                    ),
                ));
            }
            let mut out = std::io::stdout().lock();
            if json {
                for l in &states {
                    writeln!(out, "{}", serde_json::to_string(l).expect("serializes"))
                        .map_err(stdout_error)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<40}  {:>5}  {:>9}  {:>5}  {:>7}  NEXT FREE",
                    "KEY", "MAX", "WINDOW_S", "HELD", "WAITING"
                )
                .map_err(stdout_error)?;
                let now = when::now_ms();
                for l in &states {
                    let mut next = l
                        .next_free_at
                        .map(|t| when::date_and_age(t, now))
                        .unwrap_or_else(|| "-".into());
                    if let Some(p) = l.paused_until {
                        next = format!("paused until {}", when::date_and_age(p, now));
                    }
                    if let Some(set) = &l.set {
                        next = format!("{next}  (set: max {} per {} s)", set.max, set.window_s);
                    }
                    writeln!(
                        out,
                        "{:<40}  {:>5}  {:>9}  {:>5}  {:>7}  {next}",
                        l.key, l.max, l.window_s, l.held, l.waiting
                    )
                    .map_err(stdout_error)?;
                }
            }
            Ok(0)
        }
        Cmd::Pause { key, for_s } => {
            let client = Client::connect(config).await?;
            let until = client.pause(&key, Duration::from_secs_f64(for_s)).await?;
            outln!("{key}: paused until {}", when::date(until));
            Ok(0)
        }
        Cmd::Resume { key } => {
            let client = Client::connect(config).await?;
            client.resume(&key).await?;
            outln!("{key}: resumed");
            Ok(0)
        }
        Cmd::Retry { id } => {
            let client = Client::connect(config).await?;
            match client.retry(&id).await? {
                RetryOutcome::Queued => {
                    outln!("{id}: queued again");
                    Ok(0)
                }
                other => Err(Error::invalid(
                    format!("retry {id}"),
                    match other {
                        RetryOutcome::Unfinished => "it has not finished: nothing to retry",
                        RetryOutcome::Succeeded => "it succeeded: nothing to retry",
                        _ => "a flow's step or run cannot be retried alone: enqueue the flow again",
                    },
                )),
            }
        }
        Cmd::Cancel { id } => {
            let client = Client::connect(config).await?;
            let msg = match client.cancel(&id).await? {
                CancelOutcome::Cancelled => "cancelled",
                CancelOutcome::Requested => "cancel requested: the running job is being stopped",
                CancelOutcome::AlreadyFinished => "already finished: nothing to cancel",
            };
            outln!("{id}: {msg}");
            Ok(0)
        }
    }
}

fn seconds(_flag: &str, s: f64) -> Result<Duration> {
    // parse_seconds has checked it.
    Ok(Duration::from_secs_f64(s))
}

/// A command-line number of seconds: 0 to 366 days. Anything else is a
/// usage error (exit 2), like any bad flag value.
fn parse_seconds(text: &str) -> std::result::Result<f64, String> {
    let s: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    let max = sluice_shared::config::MAX_SECONDS;
    if !(s.is_finite() && (0.0..=max).contains(&s)) {
        return Err(format!("{text} is not 0 to {max} seconds (366 days)"));
    }
    Ok(s)
}

fn parse_args(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::invalid(what, format!("malformed JSON: {e}")))
}

fn single_request(
    path: String,
    workspace: String,
    args: &str,
    delay_s: Option<f64>,
    idempotency_key: Option<String>,
) -> Result<JobRequest> {
    let delay = delay_s
        .map(|s| seconds("--delay-s", s))
        .transpose()?
        .unwrap_or_default();
    Ok(JobRequest {
        path,
        workspace,
        args: parse_args(args, "--args")?,
        delay_ms: delay.as_millis() as u64,
        idempotency_key,
    })
}

/// The fields a batch line may have.
const BATCH_FIELDS: [&str; 5] = ["path", "workspace", "args", "delay_s", "idempotency_key"];

/// Reads a batch file; any bad line refuses the whole batch, naming the line.
fn read_batch(file: &std::path::Path, config: &Config) -> Result<Vec<JobRequest>> {
    let name = file.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| Error::invalid(format!("--batch {name}"), e.to_string()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut reqs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let at = format!("{name} line {}", i + 1);
        let line = line.map_err(|e| Error::invalid(&at, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = parse_args(&line, &at)?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::invalid(&at, "must be a JSON object"))?;
        // A misspelt field would otherwise be dropped without a word, and
        // the job run with defaults.
        if let Some(unknown) = obj.keys().find(|k| !BATCH_FIELDS.contains(&k.as_str())) {
            return Err(Error::invalid(
                &at,
                format!(
                    "unknown field {unknown:?}; a line has {}",
                    BATCH_FIELDS.join(", ")
                ),
            ));
        }
        let path = match obj.get("path") {
            Some(Value::String(p)) => p.clone(),
            _ => return Err(Error::invalid(&at, "needs \"path\", a string")),
        };
        let workspace = match obj.get("workspace") {
            None | Some(Value::Null) => "default".to_string(),
            Some(Value::String(w)) => w.clone(),
            Some(_) => return Err(Error::invalid(&at, "\"workspace\" must be a string")),
        };
        let args = obj
            .get("args")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let delay_ms = match obj.get("delay_s") {
            None => 0,
            Some(d) => d
                .as_f64()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| Error::invalid(&at, "\"delay_s\" must be seconds ≥ 0"))?
                .as_millis() as u64,
        };
        let idempotency_key = match obj.get("idempotency_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(Error::invalid(&at, "\"idempotency_key\" must be a string")),
        };
        let req = JobRequest {
            path,
            workspace,
            args,
            delay_ms,
            idempotency_key,
        };
        // Check each line fully here so that the error names its line.
        sluice_shared::job::NewJob::build(config, &req)
            .map_err(|e| Error::invalid(&at, e.to_string()))?;
        reqs.push(req);
    }
    if reqs.is_empty() {
        return Err(Error::invalid(format!("--batch {name}"), "holds no job"));
    }
    Ok(reqs)
}

fn print_job(job: &Job) -> Result<()> {
    let now = when::now_ms();
    let ms = |t: Option<i64>| {
        t.map(|t| when::date_and_age(t, now))
            .unwrap_or_else(|| "-".into())
    };
    outln!("id:         {}", job.id);
    outln!("path:       {}", job.path);
    outln!("workspace:  {}", job.workspace);
    if job.kind == JobKind::Flow {
        outln!("status:     {} (flow run)", job.status);
    } else {
        outln!(
            "status:     {} (attempt {} of {})",
            job.status,
            job.attempt,
            job.max_attempts
        );
    }
    if let (Some(parent), Some(step)) = (&job.parent, &job.step) {
        let iter = job.iter.map(|i| format!("[{i}]")).unwrap_or_default();
        outln!("step:       {step}{iter} of flow run {parent}");
    }
    match (&job.concurrency_key, job.max, job.window_ms) {
        (Some(k), Some(max), Some(w)) => {
            outln!("limit:      {k} (max {max} per {} s)", w as f64 / 1000.0)
        }
        _ => outln!("limit:      none"),
    }
    outln!("args:       {}", job.args);
    outln!("created_at: {}", ms(job.created_at));
    outln!("started_at: {}", ms(job.started_at));
    outln!("ended_at:   {}", ms(job.ended_at));
    if let (Some(s), Some(e)) = (job.started_at, job.ended_at) {
        outln!("ran for:    {}", when::duration((e - s).max(0) as u64));
    }
    if let Some(r) = &job.result {
        outln!("result:     {r}");
    }
    if let Some(e) = &job.error {
        outln!("error:      {e}");
    }
    Ok(())
}

/// The fields `runs --json` promises (docs/contract.md), times in Unix ms or null.
fn run_json(j: &Job) -> serde_json::Value {
    serde_json::json!({
        "id": j.id,
        "path": j.path,
        "workspace": j.workspace,
        "concurrency_key": j.concurrency_key,
        "status": j.status,
        "attempt": j.attempt,
        "created_at": j.created_at,
        "started_at": j.started_at,
        "ended_at": j.ended_at,
        "error": j.error,
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
