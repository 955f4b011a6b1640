//! Benchmark workers as separate processes, and the config they share.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_shared::Config;
use sluice_worker::{JobContext, Worker};

pub type BenchResult<T = ()> = Result<T, String>;

pub async fn run_worker(config: PathBuf) -> BenchResult {
    let config = Config::load(Some(&config)).map_err(|e| e.to_string())?;
    sluice_shared::logging::init("text");
    let mut worker = Worker::new(config.clone());
    for path in config.scripts.keys() {
        worker = worker.handler(path.clone(), |_ctx: JobContext| async {
            Ok::<_, sluice_worker::BoxError>(serde_json::Value::Null)
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    worker
        .run_until(async move {
            term.recv().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    println!("round_trips {}", sluice_shared::scripts::round_trips());
    Ok(())
}

/// Writes a config for the benchmark's namespace with the given `[scripts]`.
pub fn write_config(
    dir: &Path,
    redis_url: &str,
    prefix: &str,
    concurrency: usize,
    scripts: &str,
) -> PathBuf {
    let path = dir.join(format!("{prefix}.toml"));
    let body = format!(
        "redis_url = {redis_url:?}\nprefix = {prefix:?}\n[worker]\nconcurrency = {concurrency}\n{scripts}\n"
    );
    std::fs::write(&path, body).expect("write bench config");
    path
}

pub struct Fleet {
    children: Vec<Child>,
}

impl Fleet {
    pub fn start(n: usize, config: &Path) -> Fleet {
        let exe = std::env::current_exe().expect("own path");
        let children = (0..n)
            .map(|_| {
                Command::new(&exe)
                    .arg("worker")
                    .arg("--config")
                    .arg(config)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("start bench worker")
            })
            .collect();
        Fleet { children }
    }

    /// Waits until `n` clients are blocked (the workers' idle BLPOPs).
    pub fn wait_idle(&self, con: &mut redis::Connection, n: usize) -> BenchResult {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query(con)
                .map_err(|e| e.to_string())?;
            let blocked =
                crate::redis_stats::info_field(&info, "blocked_clients").unwrap_or(0.0) as usize;
            if blocked >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("only {blocked} of {n} workers became idle"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU seconds the worker processes have used so far (user + system).
    pub fn cpu_s(&self) -> f64 {
        self.children.iter().map(|c| process_cpu_s(c.id())).sum()
    }

    /// SIGTERM, wait, and sum the round trips the workers report.
    pub fn stop(mut self) -> u64 {
        let mut total = 0;
        for c in &mut self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        for c in &mut self.children {
            let _ = c.wait();
            let mut out = String::new();
            if let Some(mut s) = c.stdout.take() {
                let _ = s.read_to_string(&mut out);
            }
            total += out
                .lines()
                .filter_map(|l| l.strip_prefix("round_trips "))
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .sum::<u64>();
        }
        self.children.clear();
        total
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU seconds (user + system) a process has used, from /proc; 0 where that
/// is not readable.
pub fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}
