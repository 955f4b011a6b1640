//! Retry-After: a command that exits 75 with `{"retry_after_s": N}` pauses
//! its key. No job of the key starts before the pause ends (judged from the
//! jobs' own logs against the pause Redis recorded), other keys go on, and
//! the throttled attempt does not count. `sluice pause` and `resume` do the
//! same by hand.

use sluice_producer::{JobId, JobRequest};
use sluice_tests::*;

fn config(log: &std::path::Path, flag: &std::path::Path) -> String {
    let log = log.display();
    let flag = flag.display();
    format!(
        r#"
[worker]
concurrency = 4

[scripts."f/api"]
max_attempts = 1
concurrency = {{ max = 2, window_s = 0, key = "api" }}
command = ["sh", "-c", "echo \"START api $SLUICE_JOB_ID $SLUICE_ATTEMPT $(date +%s%N)\" >> {log}; if mkdir {flag} 2>/dev/null; then echo working; echo '{{\"retry_after_s\": 1.5}}'; exit 75; fi; echo '\"ok\"'"]

[scripts."f/flaky"]
max_attempts = 2
backoff_s = 0
concurrency = {{ max = 1, window_s = 0, key = "flaky" }}
command = ["sh", "-c", "if mkdir {flag}-a 2>/dev/null; then echo '{{\"retry_after_s\": 0.2}}'; exit 75; fi; if mkdir {flag}-b 2>/dev/null; then echo boom >&2; exit 1; fi; echo '\"ok\"'"]

[scripts."f/zero"]
concurrency = {{ max = 1, window_s = 0, key = "zero" }}
command = ["sh", "-c", "if mkdir {flag}-z 2>/dev/null; then echo '{{\"retry_after_s\": 0}}'; exit 75; fi; echo '\"ok\"'"]

[scripts."f/other"]
concurrency = {{ max = 2, window_s = 0, key = "other" }}
command = ["sh", "-c", "echo \"START other $SLUICE_JOB_ID $SLUICE_ATTEMPT $(date +%s%N)\" >> {log}; echo '\"ok\"'"]
"#
    )
}

/// (key, job id, attempt, Unix ns) of every START the commands logged.
fn starts(log: &std::path::Path) -> Vec<(String, String, u32, i64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((
                f[1].to_string(),
                f[2].to_string(),
                f[3].parse().ok()?,
                f[4].parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_75_pauses_the_key_and_other_keys_go_on() {
    let dir = Scratch::new("throttle");
    let (log, flag) = (dir.path("starts.log"), dir.path("throttled"));
    let env = TestEnv::new(&config(&log, &flag));
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    // The first call is told to come back in 1.5 s.
    let first = client
        .enqueue(JobRequest::new("f/api", json!({})))
        .await
        .unwrap();
    let mut paused_until = None;
    wait_until("the throttle to be recorded", || {
        let rt = tokio::runtime::Handle::current();
        let limits = std::thread::scope(|s| {
            s.spawn(|| rt.block_on(client.limits(Some("api"))).unwrap())
                .join()
                .unwrap()
        });
        paused_until = limits.first().and_then(|l| l.paused_until);
        paused_until.is_some()
    });
    let paused_until = paused_until.unwrap();
    let job = client.job(&first).await.unwrap().unwrap();
    assert_eq!(job.status, "waiting", "{job:?}");
    // Listed as waiting, by status and by its key: its key was admitted by
    // its count alone, and the wait list is found all the same.
    for key in [None, Some("api".to_string())] {
        let waiting = client
            .runs(&sluice_producer::RunsQuery {
                status: Some(sluice_producer::Status::Waiting),
                concurrency_key: key.clone(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<&JobId> = waiting.iter().map(|j| &j.id).collect();
        assert_eq!(ids, [&first], "{key:?}");
    }
    // More calls, and other work, while the key is paused.
    let mut reqs: Vec<JobRequest> = (0..5)
        .map(|_| JobRequest::new("f/api", json!({})))
        .collect();
    reqs.extend((0..4).map(|_| JobRequest::new("f/other", json!({}))));
    let more = client.enqueue_batch(&reqs).await.unwrap();
    let all: Vec<JobId> = std::iter::once(first.clone()).chain(more).collect();
    let jobs = env.finish(&client, &all).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    // The throttled attempt did not count: max_attempts is 1, and the job
    // succeeded at its second attempt.
    assert_eq!(jobs[0].attempt, 2);
    let logged = starts(&log);
    let throttle_start = logged
        .iter()
        .find(|s| s.1 == first && s.2 == 1)
        .expect("the first attempt's start")
        .3;
    for (key, id, attempt, ns) in &logged {
        if key == "api" && !(id == &first && *attempt == 1) {
            assert!(
                *ns >= paused_until * 1_000_000,
                "job {id} of the paused key started {} ms before the pause ended",
                (paused_until * 1_000_000 - ns) / 1_000_000
            );
        }
    }
    // The other key did not wait for the pause.
    assert!(
        logged
            .iter()
            .any(|(key, _, _, ns)| key == "other" && *ns < paused_until * 1_000_000),
        "no job of another key ran during the pause: {logged:?}"
    );
    assert!(throttle_start < paused_until * 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_paused_by_hand_waits_until_resumed() {
    let dir = Scratch::new("throttle");
    let (log, flag) = (dir.path("starts.log"), dir.path("throttled"));
    // The flag exists: no call throttles by itself here.
    std::fs::create_dir_all(&flag).unwrap();
    let env = TestEnv::new(&config(&log, &flag));
    let out = env.sluice(&["pause", "api", "--for-s", "600"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let api = client
        .enqueue(JobRequest::new("f/api", json!({})))
        .await
        .unwrap();
    let other = client
        .enqueue(JobRequest::new("f/other", json!({})))
        .await
        .unwrap();
    // The other key's job runs; the paused key's waits.
    let done = env.finish(&client, std::slice::from_ref(&other)).await;
    assert_eq!(done[0].status, "succeeded");
    wait_until("the paused key's job to wait", || {
        let rt = tokio::runtime::Handle::current();
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(client.job(&api)).unwrap().unwrap().status == "waiting")
                .join()
                .unwrap()
        })
    });
    let out = env.sluice(&["limits", "api", "--json"], None);
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(state["paused_until"].as_i64().is_some(), "{state}");
    assert_eq!(state["held"], 0, "the pause is no slot: {state}");
    let out = env.sluice(&["resume", "api"], None);
    assert!(out.status.success());
    let job = env.finish(&client, &[api]).await.remove(0);
    assert_eq!((job.status.as_str(), job.attempt), ("succeeded", 1));
    let out = env.sluice(&["limits", "api", "--json"], None);
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(state.get("paused_until").is_none(), "{state}");
}

/// A throttled attempt counts neither toward max_attempts nor toward the
/// backoff: with max_attempts = 2, a throttle then an error still leaves a
/// third attempt, which succeeds. And "retry after 0" pauses for as short as
/// can be, never for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_attempts_do_not_count_and_zero_never_locks_a_key() {
    let dir = Scratch::new("throttle");
    let (log, flag) = (dir.path("starts.log"), dir.path("flag"));
    let env = TestEnv::new(&config(&log, &flag));
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let flaky = client
        .enqueue(JobRequest::new("f/flaky", json!({})))
        .await
        .unwrap();
    let zeros = client
        .enqueue_batch(
            &(0..3)
                .map(|_| JobRequest::new("f/zero", json!({})))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let job = env
        .finish(&client, std::slice::from_ref(&flaky))
        .await
        .remove(0);
    assert_eq!(
        (job.status.as_str(), job.attempt),
        ("succeeded", 3),
        "{job:?}"
    );
    let jobs = env.finish(&client, &zeros).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    // A key is a key: an empty one is refused, naming it.
    let out = env.sluice(&["pause", "", "--for-s", "5"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("concurrency key"));
}

/// A worker that has never seen a key bind records a throttle of that key
/// in the same call that admits its next job: the pause is written first,
/// so the next job, admitted by the key's count otherwise, waits for it.
/// (The end must declare the key: left for a second call, it let the job
/// start at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_pauses_its_key_before_the_same_call_admits_more() {
    let dir = Scratch::new("throttle");
    let (log, flag) = (dir.path("starts.log"), dir.path("throttled"));
    let env = TestEnv::new(&format!(
        r#"
[worker]
concurrency = 1

[scripts."f/api"]
concurrency = {{ max = 2, window_s = 0, key = "api" }}
command = ["sh", "-c", "echo \"START api $SLUICE_JOB_ID $SLUICE_ATTEMPT $(date +%s%N)\" >> {log}; if mkdir {flag} 2>/dev/null; then echo '{{\"retry_after_s\": 1.5}}'; exit 75; fi; echo '\"ok\"'"]
"#,
        log = log.display(),
        flag = flag.display()
    ));
    let client = env.client().await;
    let ids = client
        .enqueue_batch(&[
            JobRequest::new("f/api", json!({})),
            JobRequest::new("f/api", json!({})),
        ])
        .await
        .unwrap();
    let _w = env.worker(&[], &[]);
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let logged = starts(&log);
    let throttled = logged
        .iter()
        .find(|s| s.1 == ids[0].as_str() && s.2 == 1)
        .expect("the first job's first start")
        .3;
    let next = logged
        .iter()
        .find(|s| s.1 == ids[1].as_str())
        .expect("the second job's start")
        .3;
    // The pause began when the throttled attempt ended, after it started.
    assert!(
        next >= throttled + 1_500_000_000,
        "the second job started {} ms after the throttled one, inside its 1.5 s pause",
        (next - throttled) / 1_000_000
    );
}
