//! The handler API: any `Serialize` result, any error with `?`, typed args,
//! a failure that is not retried, and a context that says when to stop and
//! gives the handler a grace to clean up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sluice_producer::JobRequest;
use sluice_tests::*;
use sluice_worker::{BoxError, JobContext, Permanent, StopReason, Worker};

const CONFIG: &str = r#"
[scripts."f/typed"]
max_attempts = 3
backoff_s = 0

[scripts."f/cleanup"]
"#;

#[derive(serde::Deserialize)]
struct Args {
    n: i64,
    #[serde(default)]
    mode: String,
}

#[derive(serde::Serialize)]
struct Out {
    double: i64,
    attempt: u32,
    max_attempts: u32,
    before_deadline: bool,
}

async fn typed(ctx: JobContext) -> Result<Out, BoxError> {
    let args: Args = ctx.args_as()?;
    match args.mode.as_str() {
        // Any error type goes through `?`: retried while attempts remain.
        "io" => Err(std::io::Error::other("disk on fire"))?,
        "permanent" => Err(Permanent::new("the account is closed"))?,
        _ => {}
    }
    Ok(Out {
        double: args.n * 2,
        attempt: ctx.attempt,
        max_attempts: ctx.max_attempts,
        before_deadline: tokio::time::Instant::now() < ctx.deadline,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_return_any_result_and_error_and_say_what_not_to_retry() {
    let env = TestEnv::new(CONFIG);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(env.config()).handler("f/typed", typed);
    let running = tokio::spawn(worker.run_until(async {
        let _ = stop_rx.await;
    }));
    let client = env.client().await;
    let ids = client
        .enqueue_batch(&[
            JobRequest::new("f/typed", json!({"n": 21})),
            JobRequest::new("f/typed", json!({"n": 1, "mode": "io"})),
            JobRequest::new("f/typed", json!({"n": 1, "mode": "permanent"})),
            JobRequest::new("f/typed", json!({"n": "twenty"})),
        ])
        .await
        .unwrap();
    let jobs = env.finish(&client, &ids).await;
    assert_eq!(
        jobs[0].result,
        Some(json!({"double": 42, "attempt": 1, "max_attempts": 3, "before_deadline": true}))
    );
    // An ordinary error: every attempt used.
    assert_eq!((jobs[1].status.as_str(), jobs[1].attempt), ("failed", 3));
    assert_eq!(jobs[1].error.as_deref(), Some("disk on fire"));
    // Permanent, and args that do not fit: failed at the first attempt.
    assert_eq!((jobs[2].status.as_str(), jobs[2].attempt), ("failed", 1));
    assert_eq!(jobs[2].error.as_deref(), Some("the account is closed"));
    assert_eq!((jobs[3].status.as_str(), jobs[3].attempt), ("failed", 1));
    let why = jobs[3].error.clone().unwrap_or_default();
    assert!(
        why.contains("args do not fit") && why.contains("Args"),
        "{why}"
    );
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_handler_is_told_and_may_clean_up() {
    let env = TestEnv::new(CONFIG);
    let cleaned = Arc::new(AtomicBool::new(false));
    let flag = cleaned.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(env.config()).handler("f/cleanup", move |ctx: JobContext| {
        let flag = flag.clone();
        async move {
            let why = ctx.stopped().await;
            // The grace: an await after the signal still runs.
            tokio::task::yield_now().await;
            flag.store(why == StopReason::Cancelled, Ordering::SeqCst);
            Ok::<_, BoxError>(())
        }
    });
    let running = tokio::spawn(worker.run_until(async {
        let _ = stop_rx.await;
    }));
    let client = env.client().await;
    let id = client
        .enqueue(JobRequest::new("f/cleanup", json!({})))
        .await
        .unwrap();
    wait_running(&client, std::slice::from_ref(&id), 1).await;
    client.cancel(&id).await.unwrap();
    let job = env.finish(&client, &[id]).await.remove(0);
    assert_eq!(job.status, "cancelled");
    assert!(
        cleaned.load(Ordering::SeqCst),
        "the handler did not hear of the cancel"
    );
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_for_a_path_the_config_lacks_is_refused() {
    let env = TestEnv::new(CONFIG);
    let e = Worker::new(env.config())
        .handler("f/typo", typed)
        .run_until(async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("f/typo"), "{e}");
}
