//! Running scripts: results, retries, timeouts, cancellation, Rust handlers
//! and bad records.

use sluice_tests::*;
use sluice_worker::{BoxError, JobContext, Worker};

const CONFIG: &str = r#"
[worker]
concurrency = 4

[scripts."f/echo"]
command = ["sh", "-c", "cat; printf '%s %s %s %s' \"$SLUICE_PATH\" \"$SLUICE_WORKSPACE\" \"$SLUICE_CONCURRENCY_KEY\" \"$SLUICE_ATTEMPT\" >&2; exit 0"]

[scripts."f/env"]
command = ["sh", "-c", "printf '[\"%s\",\"%s\",\"%s\",\"%s\",\"%s\"]' \"$SLUICE_JOB_ID\" \"$SLUICE_PATH\" \"$SLUICE_WORKSPACE\" \"$SLUICE_CONCURRENCY_KEY\" \"$SLUICE_ATTEMPT\""]
concurrency = { max = 5, key = "$workspace/t/$args[tenant]" }

[scripts."f/flaky"]
command = ["sh", "-c", "if [ \"$SLUICE_ATTEMPT\" -lt 2 ]; then echo first try fails >&2; exit 7; fi; echo ok"]
backoff_s = 0.05

[scripts."f/fail"]
command = ["sh", "-c", "echo something broke >&2; exit 3"]
max_attempts = 2
backoff_s = 0.05

[scripts."f/hang"]
command = ["sh", "-c", "sleep 300 & echo $! > \"$0\"; wait", "PIDFILE"]
timeout_s = 0.5
max_attempts = 1

[scripts."f/long"]
command = ["sleep", "300"]

[scripts."f/rust"]
concurrency = { max = 1 }

[scripts."f/panic"]
max_attempts = 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_gets_args_on_stdin_and_its_environment() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let mut req =
        sluice_producer::JobRequest::new("f/env", json!({"tenant": "t1", "x": "$(rm -rf /)"}));
    req.workspace = "acme".into();
    let id = client.enqueue(req).await.unwrap();
    let echo = env
        .enqueue(
            &client,
            "f/echo",
            json!({"a": [1, 2], "s": "; echo pwned"}),
            1,
        )
        .await;
    let jobs = env
        .finish(&client, &[vec![id.clone()], echo].concat())
        .await;
    assert_eq!(
        jobs[0].result,
        Some(json!([id, "f/env", "acme", "acme/t/t1", "1"]))
    );
    assert_eq!(
        jobs[1].result,
        Some(json!({"a": [1, 2], "s": "; echo pwned"})),
        "args reach stdin as JSON, never a shell"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_then_fail_with_the_reason() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let flaky = env.enqueue(&client, "f/flaky", json!({}), 1).await;
    let fail = env.enqueue(&client, "f/fail", json!({}), 1).await;
    let jobs = env.finish(&client, &[flaky, fail].concat()).await;
    assert_eq!((jobs[0].status.as_str(), jobs[0].attempt), ("succeeded", 2));
    assert_eq!((jobs[1].status.as_str(), jobs[1].attempt), ("failed", 2));
    let reason = jobs[1].error.as_deref().unwrap();
    assert!(
        reason.contains("something broke") && reason.contains('3'),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let env = TestEnv::new(&CONFIG.replace("PIDFILE", "PIDFILE_PATH"));
    let pidfile = env.dir.join("child.pid");
    let cfg = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("PIDFILE_PATH", pidfile.to_str().unwrap());
    std::fs::write(&env.config_path, cfg).unwrap();
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/hang", json!({}), 1).await;
    let job = env.finish(&client, &ids).await.remove(0);
    assert_eq!(job.status, "failed");
    assert!(
        job.error.as_deref().unwrap().contains("timed out"),
        "{job:?}"
    );
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    wait_until("the script's background child to be gone", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/long", json!({}), 1).await;
    wait_running(&client, &ids, 1).await;
    assert_eq!(
        client.cancel(&ids[0]).await.unwrap(),
        sluice_producer::CancelOutcome::Requested
    );
    let job = env.finish(&client, &ids).await.remove(0);
    assert_eq!(job.status, "cancelled");
    assert_eq!(
        client.cancel(&ids[0]).await.unwrap(),
        sluice_producer::CancelOutcome::AlreadyFinished
    );
}

/// Rust handlers registered through the library; a panicking handler and a
/// corrupt job record fail their own job, and the worker goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_handlers_and_bad_jobs_do_not_stop_the_worker() {
    let env = TestEnv::new(CONFIG);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(env.config())
        .handler("f/rust", |ctx: JobContext| async move {
            Ok::<_, BoxError>(json!({"double": ctx.args["n"].as_i64().unwrap_or(0) * 2, "key": ctx.concurrency_key}))
        })
        .handler("f/panic", |_ctx: JobContext| async move {
            if true {
                panic!("handler bug");
            }
            Ok::<_, BoxError>(json!(null))
        });
    let client = env.client().await;
    let panics = env.enqueue(&client, "f/panic", json!({}), 1).await;
    let corrupt = env.enqueue(&client, "f/rust", json!({"n": 1}), 1).await;
    // Its args damaged before any worker runs.
    let mut r = env.redis();
    let spec: String = redis::cmd("HGET")
        .arg(env.key("jobs"))
        .arg(&corrupt[0])
        .query(&mut r)
        .unwrap();
    let damaged = spec.replace(r#""args":{"n":1}"#, r#""args":{not json"#);
    assert_ne!(spec, damaged);
    let _: () = redis::cmd("HSET")
        .arg(env.key("jobs"))
        .arg(&corrupt[0])
        .arg(damaged)
        .query(&mut r)
        .unwrap();
    let fine = env.enqueue(&client, "f/rust", json!({"n": 21}), 1).await;
    let running = tokio::spawn(worker.run_until(async {
        let _ = stop_rx.await;
    }));
    let jobs = env.finish(&client, &[panics, corrupt, fine].concat()).await;
    assert_eq!(jobs[0].status, "failed");
    assert!(
        jobs[0].error.as_deref().unwrap().contains("handler bug"),
        "{:?}",
        jobs[0].error
    );
    assert_eq!(jobs[1].status, "failed");
    assert!(
        jobs[1]
            .error
            .as_deref()
            .unwrap()
            .contains("corrupt job record"),
        "{:?}",
        jobs[1].error
    );
    assert_eq!(jobs[2].status, "succeeded");
    assert_eq!(
        jobs[2].result,
        Some(json!({"double": 42, "key": "default/script/f/rust"}))
    );
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// A delayed job is scheduled, visible in the delayed set at its moment, and
/// starts no earlier than that moment (all by Redis time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_starts_no_earlier_than_its_delay() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let out = env.sluice(
        &["enqueue", "f/echo", "--delay-s", "0.4", "--args", "{}"],
        None,
    );
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let client = env.client().await;
    let mut r = env.redis();
    let due: Option<i64> = redis::cmd("ZSCORE")
        .arg(env.key("delayed:default"))
        .arg(&id)
        .query(&mut r)
        .unwrap();
    let job = env
        .finish(&client, std::slice::from_ref(&id))
        .await
        .remove(0);
    let ready_at = job.ready_at.unwrap();
    assert_eq!(ready_at, job.created_at.unwrap() + 400);
    if let Some(due) = due {
        assert_eq!(due, ready_at, "the delayed set holds it at its moment");
    }
    assert!(job.started_at.unwrap() >= ready_at, "{job:?}");
    assert_eq!(job.status, "succeeded");
}

/// A batch lands whole and in order, whether its jobs have keys or not (the
/// all-plain form of enqueue.lua must not reorder a mixed batch), and each
/// job reads back as queued with its spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_lands_in_order() {
    use sluice_producer::JobRequest;
    let env = TestEnv::new(CONFIG);
    let client = env.client().await;
    let reqs = vec![
        JobRequest::new("f/echo", json!({"n": 1})),
        JobRequest::new("f/env", json!({"tenant": "a"})),
        JobRequest::new("f/echo", json!({"n": 2})),
    ];
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    let plain = env.enqueue(&client, "f/echo", json!({"n": 3}), 2).await;
    let mut r = env.redis();
    let ready: Vec<String> = redis::cmd("LRANGE")
        .arg(env.key("ready:default"))
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    assert_eq!(
        ready,
        vec![
            ids[0].to_string(),
            format!("{} default/t/a", ids[1]),
            ids[2].to_string(),
            plain[0].to_string(),
            plain[1].to_string(),
        ]
    );
    let jobs = client.jobs(&[ids.clone(), plain].concat()).await.unwrap();
    for (job, n) in jobs
        .iter()
        .zip([json!(1), json!(null), json!(2), json!(3), json!(3)])
    {
        let job = job.as_ref().unwrap();
        assert_eq!(job.status, "queued");
        assert_eq!(job.attempt, 0);
        assert_eq!(job.args.get("n").cloned().unwrap_or(json!(null)), n);
        assert_eq!(job.ready_at, job.created_at);
    }
    assert_eq!(
        jobs[1].as_ref().unwrap().concurrency_key.as_deref(),
        Some("default/t/a")
    );
}
