//! The global limit, judged from the jobs' own recorded times, with several
//! separate worker processes.

use sluice_tests::*;

const LIMITED: &str = r#"
[worker]
concurrency = 4

[scripts."f/lim"]
command = ["sleep", "0.05"]
concurrency = { max = 2, window_s = 0.3 }

[scripts."f/pool"]
command = ["sleep", "0.1"]
concurrency = { max = 3, window_s = 0 }

[scripts."f/slow"]
command = ["true"]
concurrency = { max = 1, window_s = 600, key = "$workspace/acct/$args[account]" }

[scripts."f/free"]
command = ["true"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_holds_across_worker_processes_in_enqueue_order() {
    let env = TestEnv::new(LIMITED);
    let _workers: Vec<_> = (0..3).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/lim", json!({}), 16).await;
    let jobs = env.finish(&client, &ids).await;

    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    assert_eq!(
        jobs[0].concurrency_key.as_deref(),
        Some("default/script/f/lim")
    );
    let held = max_slots_held(&jobs);
    assert!(held <= 2, "{held} slots held at once, max is 2\n{jobs:#?}");
    assert_eq!(held, 2, "the limit's two slots should both be used");
    assert_started_in_order(&jobs);
    // Each slot is reused only once its window has passed.
    let mut by_start: Vec<_> = jobs
        .iter()
        .map(|j| (j.started_at.unwrap(), j.ended_at.unwrap()))
        .collect();
    by_start.sort();
    for i in 2..by_start.len() {
        let freed = by_start[..i]
            .iter()
            .map(|&(_, e)| e + 300)
            .collect::<Vec<_>>();
        let free_slots = freed.iter().filter(|&&f| f <= by_start[i].0).count();
        assert!(
            free_slots >= i - 1,
            "job #{i} started at {} with no slot free",
            by_start[i].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_zero_is_a_semaphore() {
    let env = TestEnv::new(LIMITED);
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/pool", json!({}), 12).await;
    let jobs = env.finish(&client, &ids).await;
    let held = max_slots_held(&jobs);
    assert!(held <= 3, "{held} in flight, max is 3");
    assert_eq!(held, 3, "the pool's three slots should all be used");
    assert_started_in_order(&jobs);
}

/// A key full for ten minutes: its waiters sit in Redis where redis-cli shows
/// them (the first in the delayed set at the exact moment its slot frees, the
/// rest in the key's wait list, in order), other keys and unlimited jobs run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_key_waits_visibly_without_holding_back_other_work() {
    let env = TestEnv::new(LIMITED);
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let first = env
        .enqueue(&client, "f/slow", json!({"account": "a"}), 1)
        .await;
    let first = env.finish(&client, &first).await.remove(0);
    let waiting = env
        .enqueue(&client, "f/slow", json!({"account": "a"}), 3)
        .await;
    let other_key = env
        .enqueue(&client, "f/slow", json!({"account": "b"}), 1)
        .await;
    let free = env.enqueue(&client, "f/free", json!({}), 10).await;

    let done = env.finish(&client, &[other_key, free].concat()).await;
    assert!(done.iter().all(|j| j.status == "succeeded"));

    let mut r = env.redis();
    let key = "default/acct/a";
    let w0 = format!("{} {key}", waiting[0]);
    wait_until("the first waiter in the delayed set", || {
        redis::cmd("ZSCORE")
            .arg(env.key("delayed:default"))
            .arg(&w0)
            .query::<Option<i64>>(&mut r)
            .unwrap()
            .is_some()
    });
    let score: i64 = redis::cmd("ZSCORE")
        .arg(env.key("delayed:default"))
        .arg(&w0)
        .query(&mut r)
        .unwrap();
    assert_eq!(
        score,
        first.ended_at.unwrap() + 600_000,
        "due exactly when the slot frees"
    );
    assert!(score > redis_now_ms(&mut r));
    let wait_key = env.key(&format!("wait:{key}"));
    wait_until("two waiters in the wait list", || {
        redis::cmd("LLEN")
            .arg(&wait_key)
            .query::<usize>(&mut r)
            .unwrap()
            == 2
    });
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg(&wait_key)
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    assert_eq!(
        queued,
        vec![format!("{} 1", waiting[1]), format!("{} 1", waiting[2])]
    );
    for id in &waiting {
        assert_eq!(client.job(id).await.unwrap().unwrap().status, "waiting");
    }
    let slots = zrange_withscores::<f64>(&mut r, &env.key(&format!("slots:{key}")));
    assert_eq!(
        slots,
        vec![(format!("{}#r", waiting[0]), f64::INFINITY)],
        "one slot, reserved for the first waiter"
    );

    // Cancelling the waiters leaves nothing behind on the key.
    for id in &waiting {
        assert_eq!(
            client.cancel(id).await.unwrap(),
            sluice_producer::CancelOutcome::Cancelled
        );
    }
    let out = client.wait_all(Some(PATIENCE)).await.unwrap();
    assert_eq!((out.succeeded, out.cancelled, out.failed), (12, 3, 0));
    assert_eq!(
        redis::cmd("LLEN")
            .arg(&wait_key)
            .query::<usize>(&mut r)
            .unwrap(),
        0
    );
    let delayed: Vec<String> = redis::cmd("ZRANGE")
        .arg(env.key("delayed:default"))
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    assert!(delayed.is_empty(), "{delayed:?}");
    // The ended slot's own window is back in place, unreserved: handed from
    // waiter to waiter as each was cancelled, it ends with the last one.
    let slots = zrange_withscores::<i64>(&mut r, &env.key(&format!("slots:{key}")));
    assert_eq!(
        slots,
        vec![(
            format!("{}#c", waiting[2]),
            first.ended_at.unwrap() + 600_000
        )]
    );
}

/// Workers whose clocks are five minutes off either way still hold the limit:
/// every time the limit uses is Redis's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_worker_clocks_still_hold_the_limit() {
    let env = TestEnv::new(
        r#"
# One job per worker at a time, so that both skewed workers take part.
[worker]
concurrency = 1
[scripts."f/clock"]
command = ["sh", "-c", "sleep 0.05; date +%s"]
concurrency = { max = 2, window_s = 0.3 }
"#,
    );
    let no_mono = [("FAKETIME_DONT_FAKE_MONOTONIC", "1")];
    let behind = env.worker(&["faketime", "-f", "-5m"], &no_mono);
    let ahead = env.worker(&["faketime", "-f", "+5m"], &no_mono);
    // Both before the jobs: a worker slow to start (faketime, a loaded
    // machine) found the other one had run all 16 (seen once in CI).
    behind.wait_for_log("worker started");
    ahead.wait_for_log("worker started");
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/clock", json!({}), 16).await;
    let jobs = env.finish(&client, &ids).await;
    assert!(
        jobs.iter().all(|j| j.status == "succeeded"),
        "{}",
        env.logs()
    );
    let held = max_slots_held(&jobs);
    assert!(held <= 2, "{held} slots held at once, max is 2");
    assert_started_in_order(&jobs);
    // Both skewed workers ran jobs: their scripts saw clocks 5 minutes off.
    let skews: Vec<i64> = jobs
        .iter()
        .map(|j| j.result.as_ref().unwrap().as_i64().unwrap() - j.ended_at.unwrap() / 1000)
        .collect();
    assert!(
        skews.iter().any(|s| (-310..=-290).contains(s)),
        "no job ran 5 min behind: {skews:?}"
    );
    assert!(
        skews.iter().any(|s| (290..=310).contains(s)),
        "no job ran 5 min ahead: {skews:?}"
    );
}

/// A job whose delay ran out does not overtake an older job of its key that
/// was already waiting for a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_running_out_does_not_overtake_older_jobs() {
    let env = TestEnv::new(
        r#"
[worker]
concurrency = 1
[scripts."f/one"]
command = ["sleep", "0.5"]
concurrency = { max = 1, window_s = 0 }
"#,
    );
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let first = env.enqueue(&client, "f/one", json!({}), 1).await;
    wait_running(&client, &first, 1).await;
    let older = env.enqueue(&client, "f/one", json!({}), 1).await;
    let mut later = sluice_producer::JobRequest::new("f/one", json!({}));
    later.delay_ms = 50;
    let delayed = client.enqueue(later).await.unwrap();
    let jobs = env
        .finish(&client, &[first, older, vec![delayed]].concat())
        .await;
    assert!(
        jobs[1].started_at < jobs[2].started_at,
        "the delayed job (due at {}) overtook the older one: {jobs:#?}",
        jobs[2].ready_at.unwrap()
    );
    assert!(
        jobs[2].ready_at.unwrap() < jobs[0].ended_at.unwrap(),
        "its delay ran out while the key was busy"
    );
}
