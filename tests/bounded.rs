//! Bounded state: once a key holds nothing and has nothing waiting, nothing
//! of it stays in Redis beyond its window, and retention removes everything
//! of the jobs it removes.

use sluice_tests::*;

const CONFIG: &str = r#"
[worker]
concurrency = 8

[retention]
keep_s = 0
every_s = 0.5

[scripts."f/tenant"]
command = ["sh", "-c", "cat"]
concurrency = { max = 1, window_s = 0.3, key = "tenant/$args[t]" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_shrinks_back_to_its_counters_once_work_is_done() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let reqs: Vec<_> = (0..40)
        .map(|i| sluice_producer::JobRequest::new("f/tenant", json!({ "t": i % 10 })))
        .collect();
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    // Retention removes them as soon as they finish (they read as missing
    // then): the counters below say how they ended.
    let out = client.wait(&ids, Some(PATIENCE)).await.unwrap();
    assert_eq!(
        (out.failed, out.cancelled, out.timed_out),
        (0, 0, false),
        "{out:?}"
    );
    // Windows pass, slots sets expire with their last slot; retention
    // removes the jobs and their indexes, and prunes the idle keys.
    let mut r = env.redis();
    let left = |r: &mut redis::Connection| -> Vec<String> {
        let mut k: Vec<String> = redis::cmd("KEYS").arg(env.key("*")).query(r).unwrap();
        k.sort();
        k
    };
    // The counters, the tags registry, the partition count and an unused
    // wake-up token are all that stays.
    let expected = [
        env.key("marker:default"),
        env.key("partitions"),
        env.key("stats"),
        env.key("tags"),
    ];
    wait_until("only the namespace's counters to be left", || {
        left(&mut r).iter().all(|k| expected.contains(k))
    });
    let stats: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(env.key("stats"))
        .query(&mut r)
        .unwrap();
    // The counters count what is stored: retention took them down with the
    // jobs, so `sluice wait` of the namespace reports on what is left.
    assert_eq!(stats.get("active"), Some(&0), "{stats:?}");
    assert_eq!(stats.get("succeeded"), Some(&0), "{stats:?}");
    assert!(client.limits(None).await.unwrap().is_empty());
}
