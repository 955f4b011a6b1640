//! Command scripts: the argv runs as given (no shell, nothing from the args in
//! it), in its own process group so a timeout or cancel kills all it started,
//! under a supervisor that kills that group if the worker dies or passes its
//! fencing deadline (supervise.rs). Args arrive as JSON on stdin; stdout is
//! the result; stderr's tail is the reason of a failure. docs/command-protocol.md
//! is this for script authors.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::admitted::Outcome;
use crate::handler::JobContext;
use crate::running::Stop;

/// Most of stdout kept as the result, and of stderr kept as the reason.
const STDOUT_CAP: usize = 1 << 20;
const STDERR_TAIL: usize = 4096;

pub async fn run(
    argv: &[String],
    ctx: &JobContext,
    timeout: Duration,
    stop: &mut watch::Receiver<Option<Stop>>,
    deadline: Option<&'static AtomicI64>,
) -> Outcome {
    // Stopped (fenced, cancelled) before it could start: start nothing.
    if let Some(why) = *stop.borrow() {
        return Outcome::from_stop(why);
    }
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .env("SLUICE_JOB_ID", ctx.id.as_str())
        .env("SLUICE_PATH", &ctx.path)
        .env("SLUICE_WORKSPACE", &ctx.workspace)
        .env(
            "SLUICE_CONCURRENCY_KEY",
            ctx.concurrency_key.as_deref().unwrap_or(""),
        )
        .env("SLUICE_ATTEMPT", ctx.attempt.to_string());
    crate::supervise::install(&mut cmd, deadline);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Err(format!("cannot start {:?}: {e}", argv[0])),
    };
    // However this function is left (the future dropped included), the
    // group goes: whatever the script left running in it holds no pipe of
    // ours and outlives no slot.
    let group = Group(
        child.id().map(|p| Pid::from_raw(p as i32)),
        std::sync::atomic::AtomicBool::new(false),
    );
    let kill_group = || group.kill();

    let input = ctx.args.to_string();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A script that never reads stdin must not block us: write in the background.
    tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let stdout = tokio::spawn(read_capped(
        child.stdout.take().expect("piped"),
        STDOUT_CAP,
        false,
    ));
    let stderr = tokio::spawn(read_capped(
        child.stderr.take().expect("piped"),
        STDERR_TAIL,
        true,
    ));

    let status = tokio::select! {
        // A stop first: when the supervisor's kill and the watchdog's stop
        // land together, the stop says what it was.
        biased;
        why = stopped(stop) => {
            kill_group();
            let _ = child.wait().await;
            return Outcome::from_stop(why);
        }
        s = child.wait() => s,
        _ = tokio::time::sleep(timeout) => {
            kill_group();
            let _ = child.wait().await;
            return Outcome::Err(format!("timed out after {} s; the process group was killed", timeout.as_secs_f64()));
        }
    };
    // The supervisor killed what the command left in its group before it
    // exited; the group id may be free now, so it is not killed again.
    group.disarm();
    let out = stdout.await.unwrap_or_default();
    let err = stderr.await.unwrap_or_default();
    // Killed by its supervisor at the lease's local deadline: the attempt
    // may already be another worker's, so it reports nothing.
    let killed = status.as_ref().is_ok_and(|s| s.signal() == Some(9));
    if *stop.borrow() == Some(Stop::Lost) || (killed && deadline.is_some_and(crate::fence::passed))
    {
        return Outcome::Lost;
    }
    match status {
        Ok(s) if s.success() => {
            let text = String::from_utf8_lossy(&out);
            let text = text.trim();
            let value = serde_json::from_str::<serde_json::Value>(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
            Outcome::Ok(value)
        }
        Ok(s) if s.code() == Some(EX_TEMPFAIL) => throttled(&out),
        Ok(s) => {
            let tail = String::from_utf8_lossy(&err).trim().to_string();
            Outcome::Err(format!("{s}: {tail}"))
        }
        Err(e) => Outcome::Err(format!("waiting for the process failed: {e}")),
    }
}

/// The exit code of a command that was told to come back later (sysexits'
/// EX_TEMPFAIL), with `{"retry_after_s": N}` as the last line of its stdout.
const EX_TEMPFAIL: i32 = 75;

/// A command's Retry-After, read from the last line of its stdout; without a
/// readable one, exit 75 is an ordinary failure that says what was missing.
fn throttled(out: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(out);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let secs = serde_json::from_str::<serde_json::Value>(last)
        .ok()
        .and_then(|v| v.get("retry_after_s").and_then(|s| s.as_f64()))
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    match secs {
        Some(d) => Outcome::Throttle(
            crate::admitted::throttle_ms(d),
            format!("exit 75: retry after {} s", d.as_secs_f64()),
        ),
        None => Outcome::Err(format!(
            "exit 75 (EX_TEMPFAIL) without {{\"retry_after_s\": N}} as the last line of stdout; got {:?}",
            last.chars().take(200).collect::<String>()
        )),
    }
}

/// A command's process group, killed when this goes unless it was already.
struct Group(Option<Pid>, std::sync::atomic::AtomicBool);

impl Group {
    fn kill(&self) {
        if let Some(pg) = self.0 {
            let _ = killpg(pg, Signal::SIGKILL);
        }
        self.disarm();
    }

    fn disarm(&self) {
        self.1.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.1.load(std::sync::atomic::Ordering::Relaxed) {
            self.kill();
        }
    }
}

/// Resolves when the execution is asked to stop, with the reason.
pub async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(why) = *stop.borrow_and_update() {
            return why;
        }
        if stop.changed().await.is_err() {
            // The registry dropped us: treat as lost, never report.
            return Stop::Lost;
        }
    }
}

/// Reads a pipe to its end, keeping the first `cap` bytes, or the last ones
/// when `tail`.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize, tail: bool) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > cap {
                    if tail {
                        kept.drain(..kept.len() - cap);
                    } else {
                        kept.truncate(cap);
                    }
                }
            }
        }
    }
}
