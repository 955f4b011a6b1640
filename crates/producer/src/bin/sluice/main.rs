//! `sluice`: the producer's command line (SPEC section 3).
//!
//! Exit codes: 0 success; for `wait` 1 when a job failed or was cancelled and
//! 2 on timeout; 2 for bad usage; 3 for any error (bad input, Redis down).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod progress;
use serde_json::Value;
use sluice_producer::{
    CancelOutcome, Client, Config, Error, Job, JobRequest, Result, RunsQuery, Status,
};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Enqueue, wait for and inspect Sluice jobs"
)]
struct Cli {
    /// Config file (TOML); SLUICE_CONFIG works too.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enqueue one job (prints its id), or a batch with --batch (one id a line).
    Enqueue {
        /// The script's path, as in the config.
        #[arg(required_unless_present = "batch")]
        path: Option<String>,
        #[arg(long, default_value = "default", conflicts_with = "batch")]
        workspace: String,
        /// The job's args: one JSON object.
        #[arg(long, default_value = "{}", conflicts_with = "batch")]
        args: String,
        /// Run no earlier than this many seconds from now.
        #[arg(long, conflicts_with = "batch", allow_negative_numbers = true)]
        delay_s: Option<f64>,
        /// A file of JSON objects, one a line ({"path", "workspace", "args"}); - for stdin.
        #[arg(long, conflicts_with = "path")]
        batch: Option<PathBuf>,
    },
    /// Wait for jobs (all of the namespace's when no id is given) to finish.
    Wait {
        ids: Vec<String>,
        #[arg(long, allow_negative_numbers = true)]
        timeout_s: Option<f64>,
    },
    /// Show one job, with its result or error.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job that has not finished.
    Cancel { id: String },
    /// List jobs, newest first.
    Runs {
        #[arg(long)]
        concurrency_key: Option<String>,
        /// scheduled, queued, waiting, running, succeeded, failed or cancelled
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Show each concurrency key in use: its limit, slots held, jobs waiting.
    Limits {
        key: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
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
    let config = Config::load(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::Enqueue {
            path,
            workspace,
            args,
            delay_s,
            batch,
        } => {
            let reqs = match batch {
                Some(file) => read_batch(&file, &config)?,
                None => vec![single_request(
                    path.unwrap_or_default(),
                    workspace,
                    &args,
                    delay_s,
                )?],
            };
            // Input is checked before connecting: a bad file is reported as
            // such even when Redis is down too.
            let client = Client::connect(config).await?;
            let ids = client.enqueue_batch(&reqs).await?;
            let mut out = std::io::stdout().lock();
            for id in ids {
                writeln!(out, "{id}").ok();
            }
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
            let steps = if job.kind == "flow" {
                client.flow_steps(&job.id, &job.path).await?
            } else {
                vec![]
            };
            if json {
                let mut v = serde_json::to_value(&job).expect("job serializes");
                if job.kind == "flow" {
                    v["steps"] = serde_json::to_value(&steps).expect("steps serialize");
                }
                println!("{v}");
            } else {
                print_job(&job);
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
                    println!("  step {:<16} {}{progress}{result}", s.id, s.status);
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
            let status = status
                .map(|s| {
                    Status::parse(&s).ok_or_else(|| {
                        Error::invalid("--status", format!("{s:?} is not one of scheduled, queued, waiting, running, succeeded, failed, cancelled"))
                    })
                })
                .transpose()?;
            let client = Client::connect(config).await?;
            let q = RunsQuery {
                concurrency_key,
                status,
                path,
                workspace,
                limit,
            };
            let jobs = client.runs(&q).await?;
            let mut out = std::io::stdout().lock();
            if json {
                for j in &jobs {
                    writeln!(out, "{}", run_json(j)).ok();
                }
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<9}  {:<24}  {:<10}  {:<24}  {:>13}  {:>8}",
                    "ID",
                    "STATUS",
                    "PATH",
                    "WORKSPACE",
                    "CONCURRENCY KEY",
                    "CREATED (ms)",
                    "RAN (ms)"
                )
                .ok();
                for j in &jobs {
                    let ran = match (j.started_at, j.ended_at) {
                        (Some(s), Some(e)) => (e - s).to_string(),
                        _ => "-".into(),
                    };
                    writeln!(
                        out,
                        "{:<36}  {:<9}  {:<24}  {:<10}  {:<24}  {:>13}  {:>8}",
                        j.id,
                        j.status,
                        j.path,
                        j.workspace,
                        j.concurrency_key.as_deref().unwrap_or("-"),
                        j.created_at.map(|t| t.to_string()).unwrap_or_default(),
                        ran
                    )
                    .ok();
                }
            }
            Ok(0)
        }
        Cmd::Limits { key, json } => {
            let client = Client::connect(config).await?;
            let states = client.limits(key.as_deref()).await?;
            if key.is_some() && states.is_empty() {
                return Err(Error::invalid(
                    "key",
                    format!(
                        "{:?} is not a concurrency key in use",
                        key.unwrap_or_default()
                    ),
                ));
            }
            let mut out = std::io::stdout().lock();
            if json {
                for l in &states {
                    writeln!(out, "{}", serde_json::to_string(l).expect("serializes")).ok();
                }
            } else {
                writeln!(
                    out,
                    "{:<40}  {:>5}  {:>9}  {:>5}  {:>7}  NEXT FREE AT (Unix ms)",
                    "KEY", "MAX", "WINDOW_S", "HELD", "WAITING"
                )
                .ok();
                for l in &states {
                    let next = l
                        .next_free_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into());
                    writeln!(
                        out,
                        "{:<40}  {:>5}  {:>9}  {:>5}  {:>7}  {next}",
                        l.key, l.max, l.window_s, l.held, l.waiting
                    )
                    .ok();
                }
            }
            Ok(0)
        }
        Cmd::Cancel { id } => {
            let client = Client::connect(config).await?;
            let msg = match client.cancel(&id).await? {
                CancelOutcome::Cancelled => "cancelled",
                CancelOutcome::Requested => "cancel requested: the running job is being stopped",
                CancelOutcome::AlreadyFinished => "already finished: nothing to cancel",
            };
            println!("{id}: {msg}");
            Ok(0)
        }
    }
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| Error::invalid(flag, format!("{s} is not a number of seconds ≥ 0")))
}

fn parse_args(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::invalid(what, format!("malformed JSON: {e}")))
}

fn single_request(
    path: String,
    workspace: String,
    args: &str,
    delay_s: Option<f64>,
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
    })
}

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
        let req = JobRequest {
            path,
            workspace,
            args,
            delay_ms,
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

fn print_job(job: &Job) {
    let ms = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
    println!("id:         {}", job.id);
    println!("path:       {}", job.path);
    println!("workspace:  {}", job.workspace);
    if job.kind == "flow" {
        println!("status:     {} (flow run)", job.status);
    } else {
        println!(
            "status:     {} (attempt {} of {})",
            job.status, job.attempt, job.max_attempts
        );
    }
    if let (Some(parent), Some(step)) = (&job.parent, &job.step) {
        let iter = job.iter.map(|i| format!("[{i}]")).unwrap_or_default();
        println!("step:       {step}{iter} of flow run {parent}");
    }
    match (&job.concurrency_key, job.max, job.window_ms) {
        (Some(k), Some(max), Some(w)) => {
            println!("limit:      {k} (max {max} per {} s)", w as f64 / 1000.0)
        }
        _ => println!("limit:      none"),
    }
    println!("args:       {}", job.args);
    println!("created_at: {}", ms(job.created_at));
    println!("started_at: {}", ms(job.started_at));
    println!("ended_at:   {}", ms(job.ended_at));
    if let (Some(s), Some(e)) = (job.started_at, job.ended_at) {
        println!("ran for:    {} ms", e - s);
    }
    if let Some(r) = &job.result {
        println!("result:     {r}");
    }
    if let Some(e) = &job.error {
        println!("error:      {e}");
    }
}

/// The fields `runs --json` promises (SPEC section 3), times in Unix ms or null.
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
