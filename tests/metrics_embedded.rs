//! A service that embeds the worker library and brings its own metrics
//! recorder: the worker's metrics go to it, and the worker serves its
//! handle on `/metrics` (it installs no recorder of its own). One test in
//! this file: a recorder is global to the process.

use std::io::{Read, Write};

use sluice_tests::*;
use sluice_worker::{BoxError, JobContext, MetricsExport, Worker};

fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out.split(' ').nth(1).unwrap().parse().unwrap(), out)
}

async fn hello(_ctx: JobContext) -> Result<&'static str, BoxError> {
    Ok("hi")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_brings_its_own_recorder() {
    // The service's recorder, with a metric of its own.
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    metrics::counter!("service_own_total").increment(7);
    let port = free_port();
    let env = TestEnv::new(&format!(
        "[worker]\nmetrics_addr = \"127.0.0.1:{port}\"\n\n[scripts.\"f/hello\"]\n"
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(env.config())
        .handler("f/hello", hello)
        .metrics(MetricsExport::Prometheus(handle));
    let running = tokio::spawn(worker.run_until(async {
        let _ = stop_rx.await;
    }));
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/hello", json!({}), 3).await;
    env.finish(&client, &ids).await;
    let body = tokio::task::spawn_blocking(move || {
        wait_until("the worker's counters in the service's recorder", || {
            get(port, "/metrics")
                .1
                .contains(r#"sluice_jobs_succeeded_total{path="f/hello"} 3"#)
        });
        get(port, "/metrics")
    })
    .await
    .unwrap();
    assert_eq!(body.0, 200);
    assert!(body.1.contains("service_own_total 7"), "{}", body.1);
    assert_eq!(
        tokio::task::spawn_blocking(move || get(port, "/healthz").0)
            .await
            .unwrap(),
        200
    );
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}
