//! An opening on a key wakes one worker, not every idle one: each tag's next
//! delayed entry is timed by one worker (next_in_ms in queues.lua), and
//! counted here from the workers' own admission counters.

use std::io::{Read, Write};

use sluice_tests::*;

const CONFIG: &str = r#"
[worker]
concurrency = 4

[scripts."f/one"]
command = ["true"]
concurrency = { max = 1, window_s = 0.3 }
"#;

/// The admission calls a worker has made, from its /metrics.
fn admit_calls(port: u16) -> u64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(r#"sluice_script_seconds_count{script="admit"} "#))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Eight idle workers, one key with max 1 and a 0.3 s window, six jobs: each
/// slot that opens costs at most two admission calls in the whole fleet (one
/// to take the job, one to record its end), where every idle worker used to
/// call when the slot's moment came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_wakes_one_worker_not_the_fleet() {
    let env = TestEnv::new(CONFIG);
    let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
    let workers: Vec<_> = ports
        .iter()
        .map(|p| {
            let addr = format!("127.0.0.1:{p}");
            env.worker(&[], &[("SLUICE_WORKER__METRICS_ADDR", addr.as_str())])
        })
        .collect();
    for w in &workers {
        w.wait_for_log("serving /metrics");
    }
    // Every worker has made its first call and sleeps.
    wait_until("each worker's first admission call", || {
        ports.iter().all(|&p| admit_calls(p) >= 1)
    });
    let before: u64 = ports.iter().map(|&p| admit_calls(p)).sum();
    let client = env.client().await;
    let n = 6;
    let ids = env.enqueue(&client, "f/one", json!({}), n).await;
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    assert_eq!(max_slots_held(&jobs), 1);
    let per: Vec<u64> = ports.iter().map(|&p| admit_calls(p)).collect();
    let calls = per.iter().sum::<u64>() - before;
    // Two per job, and the first job's wake-up may reach a second worker.
    assert!(
        calls <= 2 * n as u64 + 2,
        "{calls} admission calls for {n} jobs"
    );
}

/// Two workers with room for one job each and two delayed jobs: the worker
/// that takes the first is full when it would time the second, so it wakes
/// the other worker to time it. The second job starts while the first still
/// runs (from the commands' own logs), not when the first ends or at the
/// idle workers' 30 s safety wake-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_hands_the_next_delayed_job_to_an_idle_one() {
    let scratch = Scratch::new("wakeups-full");
    let log = scratch.path("log");
    let env = TestEnv::new(&format!(
        "[worker]\nconcurrency = 1\n\n[scripts.\"f/long\"]\ncommand = {}\n\n[scripts.\"f/short\"]\ncommand = {}\n",
        logging_command(&log, 8.0),
        logging_command(&log, 0.0)
    ));
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let mut first = sluice_producer::JobRequest::new("f/long", json!({}));
    first.delay_ms = 300;
    let mut second = sluice_producer::JobRequest::new("f/short", json!({}));
    second.delay_ms = 1200;
    let ids = client.enqueue_batch(&[first, second]).await.unwrap();
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let lines = read_command_log(&log);
    let at = |kind: &str, id: &str| {
        lines
            .iter()
            .find(|l| l.kind == kind && l.id == id)
            .map(|l| l.ns)
            .unwrap_or_else(|| panic!("no {kind} of {id} in {lines:#?}"))
    };
    assert!(
        at("START", &ids[1]) < at("END", &ids[0]),
        "the second delayed job waited for the first to end"
    );
}
