//! Prometheus metrics and health on `[worker] metrics_addr`: `/metrics` in the
//! text format, `/healthz` answering 200 while Redis answers a PING, else 503.
//! Off when unset; the metric calls elsewhere then cost next to nothing.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sluice_shared::redis_conn::Pool;
use sluice_shared::Keys;
use tokio::net::TcpListener;

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

/// Where the worker's metrics go, and who serves them (see
/// [`crate::Worker::metrics`]).
#[derive(Clone, Default)]
pub enum MetricsExport {
    /// The worker installs a Prometheus recorder for the process and serves
    /// it on `/metrics` (the default). If the process has a recorder
    /// already, the worker says so and serves `/healthz` only.
    #[default]
    Install,
    /// The service installed a Prometheus recorder itself: the worker
    /// serves this handle's rendering on `/metrics`.
    Prometheus(PrometheusHandle),
    /// The service has a recorder of its own (any kind) and exports it
    /// itself: the worker's metrics go to it, and the worker serves
    /// `/healthz` only.
    Elsewhere,
}

/// The process-wide Prometheus recorder with Sluice's buckets, installed.
fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ],
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| e.to_string())
}

/// Serves `/metrics` (when there is a Prometheus handle to render) and
/// `/healthz` on `addr`; returns once listening, with the task to abort
/// when the worker stops.
pub async fn serve(
    addr: SocketAddr,
    export: MetricsExport,
    pool: Pool,
    keys: Vec<Keys>,
    running: Vec<Running>,
) -> sluice_shared::Result<tokio::task::JoinHandle<()>> {
    // Bound first: a port taken leaves no recorder installed behind.
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| sluice_shared::Error::Config(format!("worker.metrics_addr {addr}: {e}")))?;
    let handle = match export {
        MetricsExport::Install => match install() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "a metrics recorder is installed already: its owner exports the worker's metrics; serving /healthz only");
                None
            }
        },
        MetricsExport::Prometheus(h) => Some(h),
        MetricsExport::Elsewhere => None,
    };
    tracing::info!(%addr, metrics = handle.is_some(), "serving /metrics and /healthz");
    let gauges = tokio::spawn(gauges(pool.clone(), keys, running));
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .with_state(pool);
    if let Some(h) = handle {
        app = app.route(
            "/metrics",
            get(move || {
                let h = h.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        h.render(),
                    )
                }
            }),
        );
    }
    let app = app.fallback(|| async {
        (
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        )
    });
    Ok(tokio::spawn(async move {
        // The gauges stop with the server, however it ends (aborted).
        let _gauges = AbortOnDrop(gauges);
        sluice_shared::http::serve(listener, app, std::future::pending()).await;
    }))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gauges read from Redis now and then: jobs waiting on limits, namespace-wide
/// (the sum over its partitions).
async fn gauges(pool: Pool, keys: Vec<Keys>, running: Vec<Running>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        metrics::gauge!(RUNNING).set(running.iter().map(Running::len).sum::<usize>() as f64);
        let read = async {
            let mut con = pool.get().await.ok()?;
            let mut waiting = 0;
            for k in &keys {
                let w: Option<i64> = redis::cmd("HGET")
                    .arg(k.stats())
                    .arg("waiting")
                    .query_async(&mut *con)
                    .await
                    .ok()?;
                waiting += w.unwrap_or(0).max(0);
            }
            Some(waiting)
        };
        if let Some(w) = read.await {
            metrics::gauge!(WAITING).set(w as f64);
        }
    }
}

/// 200 while Redis answers a PING within 2 s, else 503.
async fn healthz(State(pool): State<Pool>) -> impl IntoResponse {
    let ping = async {
        let mut con = pool.get().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut *con)
            .await
            .ok()
    };
    let (status, body) = match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Some(_)) => (StatusCode::OK, "{\"status\":\"ok\",\"redis\":\"ok\"}\n"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"unhealthy\",\"redis\":\"unreachable\"}\n",
        ),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}
