//! Routing by tag: a worker runs only jobs of its tags, judged from what
//! the jobs' own commands logged (which service ran them); a key shared by
//! jobs of several tags keeps one limit, FIFO; work of a tag no worker
//! serves stays queued and costs the others nothing; a flow's steps take
//! their script's tag or their flow's.

use sluice_producer::JobRequest;
use sluice_tests::*;

/// Each command logs `<SERVICE> <path> <job id> <START|END> <unix ns>`;
/// both services have the same config (so each could run every path), and
/// only their tags tell them apart.
fn config(log: &std::path::Path, flag: &std::path::Path) -> String {
    let log = log.display();
    let flag = flag.display();
    let cmd = |path: &str, secs: &str| {
        format!(
            r#"["sh", "-c", "echo \"$SLUICE_TEST_SERVICE {path} $SLUICE_JOB_ID START $(date +%s%N)\" >> {log}; sleep {secs}; echo \"$SLUICE_TEST_SERVICE {path} $SLUICE_JOB_ID END $(date +%s%N)\" >> {log}; echo '\"ok\"'"]"#
        )
    };
    format!(
        r#"
[worker]
concurrency = 4

[scripts."f/a"]
tag = "svc-a"
command = {a}

[scripts."f/b"]
tag = "svc-b"
command = {b}

[scripts."f/shared-a"]
tag = "svc-a"
concurrency = {{ max = 1, window_s = 0, key = "shared" }}
command = {sa}

[scripts."f/shared-b"]
tag = "svc-b"
concurrency = {{ max = 1, window_s = 0, key = "shared" }}
command = {sb}

[scripts."f/shared-hold"]
tag = "svc-a"
concurrency = {{ max = 1, window_s = 0, key = "shared" }}
command = ["sh", "-c", "while [ ! -e {flag} ]; do sleep 0.02; done; echo '\"ok\"'"]

[scripts."f/nobody"]
tag = "gpu"
command = ["true"]

[scripts."f/step"]
command = {st}

[scripts."f/step-b"]
tag = "svc-b"
command = {stb}

[flows."f/flow"]
tag = "svc-a"
steps = [{{ id = "one", script = "f/step" }}, {{ id = "two", script = "f/step-b" }}]
"#,
        a = cmd("f/a", "0"),
        b = cmd("f/b", "0"),
        sa = cmd("f/shared-a", "0.05"),
        sb = cmd("f/shared-b", "0.05"),
        st = cmd("f/step", "0"),
        stb = cmd("f/step-b", "0"),
    )
}

/// (service, path, job id, START|END, unix ns) of every line the commands logged.
fn lines(log: &std::path::Path) -> Vec<(String, String, String, String, i64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 5).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                    f[4].parse().unwrap(),
                )
            })
        })
        .collect()
}

struct Fleet {
    env: TestEnv,
    log: std::path::PathBuf,
    flag: std::path::PathBuf,
    _scratch: Scratch,
    _workers: Vec<WorkerProcess>,
}

/// Two services on one namespace: two processes with tag svc-a, one with svc-b.
fn fleet() -> Fleet {
    let scratch = Scratch::new("tags");
    let log = scratch.path("commands.log");
    let flag = scratch.path("release");
    let env = TestEnv::new(&config(&log, &flag));
    let tags = |t: &'static str, name: &'static str| {
        [("SLUICE_WORKER__TAGS", t), ("SLUICE_TEST_SERVICE", name)]
    };
    let workers = vec![
        env.worker(&[], &tags("svc-a", "A")),
        env.worker(&[], &tags("svc-a", "A")),
        env.worker(&[], &tags("svc-b", "B")),
    ];
    Fleet {
        env,
        log,
        flag,
        _scratch: scratch,
        _workers: workers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_runs_only_the_jobs_of_its_tags() {
    let f = fleet();
    let client = f.env.client().await;
    let reqs: Vec<_> = (0..60)
        .map(|i| JobRequest::new(if i % 2 == 0 { "f/a" } else { "f/b" }, json!({ "i": i })))
        .collect();
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    let jobs = f.env.finish(&client, &ids).await;
    assert!(
        jobs.iter()
            .all(|j| j.status == "succeeded" && j.attempt == 1),
        "{jobs:#?}"
    );
    assert_eq!(jobs[0].tag, "svc-a");
    assert_eq!(jobs[1].tag, "svc-b");
    let ran = lines(&f.log);
    let starts: Vec<_> = ran.iter().filter(|l| l.3 == "START").collect();
    assert_eq!(starts.len(), 60, "each job ran once: {ran:?}");
    for (service, path, id, _, _) in starts {
        let want = if path == "f/a" { "A" } else { "B" };
        assert_eq!(service, want, "job {id} of {path} ran on service {service}");
    }
}

/// One key used by jobs of two tags holds one limit across both services,
/// and its jobs start in the order they were enqueued, whatever their tag
/// and whichever service reached the key first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_shared_by_two_tags_holds_one_limit_in_fifo_order() {
    let f = fleet();
    let client = f.env.client().await;
    // The key is held while the jobs arrive, so that every one of them
    // waits in its line, whichever service took it first.
    let hold = client
        .enqueue(JobRequest::new("f/shared-hold", json!({})))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while client.job(&hold).await.unwrap().unwrap().status != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reqs: Vec<_> = (0..16)
        .map(|i| {
            let path = if i % 3 == 0 {
                "f/shared-b"
            } else {
                "f/shared-a"
            };
            JobRequest::new(path, json!({ "i": i }))
        })
        .collect();
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    let look = client.clone();
    let all_waiting = || {
        let c = look.clone();
        let ids = ids.clone();
        async move {
            c.jobs(&ids)
                .await
                .unwrap()
                .iter()
                .all(|j| j.as_ref().is_some_and(|j| j.status == "waiting"))
        }
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while !all_waiting().await {
        assert!(
            std::time::Instant::now() < deadline,
            "jobs never all waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::write(&f.flag, "").unwrap();
    let jobs = f.env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    f.env.finish(&client, &[hold]).await;
    let ran = lines(&f.log);
    // From the commands' own lines: never two running at once ...
    let mut events: Vec<_> = ran.iter().map(|l| (l.4, l.3 == "START", &l.2)).collect();
    events.sort();
    let mut running = 0;
    for (ns, start, id) in &events {
        running += if *start { 1 } else { -1 };
        assert!(
            running <= 1,
            "two jobs of key shared ran at once ({id} at {ns})"
        );
    }
    // ... and in the order they were enqueued, across the two tags.
    let order: Vec<&str> = events
        .iter()
        .filter(|e| e.1)
        .map(|e| e.2.as_str())
        .collect();
    let want: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
    assert_eq!(order, want, "starts out of enqueue order");
    // Both services took part.
    for (service, path, ..) in &ran {
        let want = if path == "f/shared-b" { "B" } else { "A" };
        assert_eq!(service, want);
    }
}

/// Jobs of a tag that no worker serves stay queued, untouched: the other
/// workers neither take them nor fail them; the queue of that tag is the
/// only place they are. A worker that serves the tag later runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_a_tag_nobody_serves_waits_for_a_worker_of_that_tag() {
    let f = fleet();
    let client = f.env.client().await;
    let idle = f.env.enqueue(&client, "f/nobody", json!({}), 20).await;
    // Work the fleet does serve, enqueued after, finishes ...
    let served = f.env.enqueue(&client, "f/a", json!({}), 5).await;
    f.env.finish(&client, &served).await;
    // ... while the other tag's jobs were never admitted.
    let jobs = client.jobs(&idle).await.unwrap();
    for j in jobs.iter().flatten() {
        assert_eq!((j.status.as_str(), j.attempt), ("queued", 0), "{j:?}");
    }
    let mut r = f.env.redis();
    let queued: usize = redis::cmd("LLEN")
        .arg(f.env.key("ready:gpu"))
        .query(&mut r)
        .unwrap();
    assert_eq!(queued, 20);
    let _gpu = f.env.worker(&[], &[("SLUICE_WORKER__TAGS", "gpu,svc-b")]);
    let jobs = f.env.finish(&client, &idle).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
}

/// A flow's run and its steps go to the flow's tag, unless the step's
/// script names a tag of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_takes_its_scripts_tag_or_its_flows() {
    let f = fleet();
    let client = f.env.client().await;
    let run = client
        .enqueue(JobRequest::new("f/flow", json!({})))
        .await
        .unwrap();
    let jobs = f.env.finish(&client, std::slice::from_ref(&run)).await;
    assert_eq!(jobs[0].status, "succeeded", "{}", f.env.logs());
    assert_eq!(jobs[0].tag, "svc-a");
    let ran = lines(&f.log);
    let service_of = |path: &str| {
        ran.iter()
            .find(|l| l.1 == path)
            .map(|l| l.0.clone())
            .unwrap_or_default()
    };
    assert_eq!(service_of("f/step"), "A", "{ran:?}");
    assert_eq!(service_of("f/step-b"), "B", "{ran:?}");
}

/// At start, a worker names each path of its tags it could not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_warns_about_paths_of_its_tags_it_cannot_run() {
    let env = TestEnv::new(
        r#"
[scripts."f/handled-elsewhere"]
tag = "svc-a"

[scripts."f/other-tag"]
tag = "svc-b"
"#,
    );
    let w = env.worker(&[], &[("SLUICE_WORKER__TAGS", "svc-a")]);
    w.wait_for_log("worker started");
    let log = w.log_text();
    assert!(
        log.contains("script \"f/handled-elsewhere\" (tag \"svc-a\")"),
        "{log}"
    );
    assert!(!log.contains("f/other-tag"), "{log}");
}

/// A worker whose view of the tags registry predates a tag still hands a
/// freed slot to a waiter of that tag, on that tag's own queue: its call
/// is refused as stale before anything is written, and made again with the
/// registry read anew (without the check, the waiter's entry would land on
/// a queue no worker of its tag reads, and wait for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_of_the_tags_never_misroutes_a_waiter() {
    let scratch = Scratch::new("stale-tags");
    let flag = scratch.path("release");
    let env = TestEnv::new(&format!(
        r#"
[worker]
concurrency = 2

[scripts."f/first"]
tag = "a"
concurrency = {{ max = 1, window_s = 0, key = "k" }}
command = ["sh", "-c", "while [ ! -e {flag} ]; do sleep 0.02; done; echo '\"ok\"'"]

[scripts."f/second"]
tag = "b"
concurrency = {{ max = 1, window_s = 0, key = "k" }}
command = ["sh", "-c", "echo '\"ok\"'"]
"#,
        flag = flag.display()
    ));
    // Worker A knows only the tags registered when it started.
    let a = env.worker(&[], &[("SLUICE_WORKER__TAGS", "a")]);
    a.wait_for_log("worker started");
    let client = env.client().await;
    let first = client
        .enqueue(JobRequest::new("f/first", json!({})))
        .await
        .unwrap();
    wait_running(&client, std::slice::from_ref(&first), 1).await;
    // Tag b appears now: a job of it waits on the key A holds.
    let second = client
        .enqueue(JobRequest::new("f/second", json!({})))
        .await
        .unwrap();
    let _b = env.worker(&[], &[("SLUICE_WORKER__TAGS", "b")]);
    let deadline = std::time::Instant::now() + PATIENCE;
    while client.job(&second).await.unwrap().unwrap().status != "waiting" {
        assert!(std::time::Instant::now() < deadline, "never waited on k");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A ends its job: the slot goes to b's waiter, through b's queue.
    std::fs::write(&flag, "").unwrap();
    let jobs = env.finish(&client, &[first, second]).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
}

/// With `wait_replicas`, a script's reply comes back inside a pipeline (the
/// call, then WAIT): a caller whose view of the tags registry is out of
/// date must still recognise STALETAGS there, read the registry and call
/// again, rather than fail every call from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_of_the_tags_is_refreshed_when_calls_wait_for_replicas() {
    // A replica, so that WAIT answers at once.
    let primary = RedisServer::start();
    let rport = free_port();
    let scratch = Scratch::new("tags-replica");
    let _replica = RedisServer::spawn(
        &[
            "--port",
            &rport.to_string(),
            "--replicaof",
            "127.0.0.1",
            primary.url.rsplit(':').next().unwrap(),
            "--dir",
            scratch.0.to_str().unwrap(),
        ],
        format!("redis://127.0.0.1:{rport}"),
    );
    let env = TestEnv::with_redis(
        primary,
        r#"
wait_replicas = 1
[scripts."f/a"]
command = ["true"]
[scripts."f/gpu"]
tag = "gpu"
command = ["true"]
"#,
    );
    let old = env.client().await;
    old.enqueue(JobRequest::new("f/a", json!({})))
        .await
        .unwrap();
    // Another producer registers a tag the first has not seen.
    let other = env.client().await;
    other
        .enqueue(JobRequest::new("f/gpu", json!({})))
        .await
        .unwrap();
    old.enqueue(JobRequest::new("f/a", json!({})))
        .await
        .expect("a stale view is refreshed and the call made again");
}
