//! Prometheus metrics and health on `[worker] metrics_addr`: `/metrics` in the
//! text format, `/healthz` answering 200 while Redis answers a PING, else 503.
//! Off when unset; the metric calls elsewhere then cost next to nothing.

use std::net::SocketAddr;
use std::time::Duration;

use deadpool_redis::Pool;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sluice_shared::Keys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::running::Running;

pub const STARTED: &str = "sluice_jobs_started_total";
pub const SUCCEEDED: &str = "sluice_jobs_succeeded_total";
pub const FAILED: &str = "sluice_jobs_failed_total";
pub const CANCELLED: &str = "sluice_jobs_cancelled_total";
pub const RUNNING: &str = "sluice_jobs_running";
pub const WAITING: &str = "sluice_jobs_waiting_on_limits";
pub const QUEUE_SECONDS: &str = "sluice_queue_wait_seconds";
pub const LATENESS_SECONDS: &str = "sluice_slot_lateness_seconds";
pub const SCRIPT_SECONDS: &str = "sluice_script_seconds";
pub const RENEWALS: &str = "sluice_lease_renewals_total";
pub const RENEWAL_FAILURES: &str = "sluice_lease_renewal_failures_total";
pub const LEASES_LOST: &str = "sluice_leases_lost_total";
pub const RECOVERED: &str = "sluice_jobs_recovered_total";

/// Installs the recorder and serves it; returns once listening.
pub async fn serve(
    addr: SocketAddr,
    pool: Pool,
    keys: Keys,
    running: Running,
) -> sluice_shared::Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ],
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| sluice_shared::Error::Config(format!("worker.metrics_addr: {e}")))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| sluice_shared::Error::Config(format!("worker.metrics_addr {addr}: {e}")))?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    tokio::spawn(gauges(pool.clone(), keys, running));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (handle, pool) = (handle.clone(), pool.clone());
            tokio::spawn(async move {
                let _ = respond(stream, &handle, &pool).await;
            });
        }
    });
    Ok(())
}

/// Gauges read from Redis now and then: jobs waiting on limits, namespace-wide.
async fn gauges(pool: Pool, keys: Keys, running: Running) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        metrics::gauge!(RUNNING).set(running.len() as f64);
        let read = async {
            let mut con = pool.get().await.ok()?;
            redis::cmd("HGET")
                .arg(keys.stats())
                .arg("waiting")
                .query_async::<Option<i64>>(&mut *con)
                .await
                .ok()
        };
        if let Some(w) = read.await {
            metrics::gauge!(WAITING).set(w.unwrap_or(0).max(0) as f64);
        }
    }
}

async fn respond(
    mut stream: TcpStream,
    handle: &PrometheusHandle,
    pool: &Pool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n =
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[len..])).await??;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", handle.render()),
        "/healthz" => {
            let ping = async {
                let mut con = pool.get().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut *con)
                    .await
                    .ok()
            };
            match tokio::time::timeout(Duration::from_secs(2), ping).await {
                Ok(Some(_)) => (
                    "200 OK",
                    "application/json",
                    "{\"status\":\"ok\",\"redis\":\"ok\"}\n".to_string(),
                ),
                _ => (
                    "503 Service Unavailable",
                    "application/json",
                    "{\"status\":\"unhealthy\",\"redis\":\"unreachable\"}\n".to_string(),
                ),
            }
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}
