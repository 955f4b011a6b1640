//! The `sluice` command line as docs/contract.md says, and every kind of bad
//! input its guarantees name refused with a named reason and nothing written.

use sluice_tests::*;

const CONFIG: &str = r#"
[scripts."f/ok"]
command = ["sh", "-c", "cat"]

[scripts."f/bad"]
command = ["false"]
max_attempts = 1

[scripts."f/keyed"]
command = ["true"]
concurrency = { max = 1, key = "$args[account]" }

[scripts."f/second"]
command = ["sh", "-c", "test \"$SLUICE_ATTEMPT\" -ge 2 && echo '\"ok\"'"]
max_attempts = 1
concurrency = { max = 1, window_s = 0 }
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn job_keys(env: &TestEnv) -> Vec<String> {
    let mut r = env.redis();
    redis::cmd("KEYS")
        .arg(format!("{{{}}}:*", env.prefix))
        .query(&mut r)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_status_round_trip() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let out = env.sluice(
        &[
            "enqueue",
            "f/ok",
            "--workspace",
            "acme",
            "--args",
            r#"{"x":1}"#,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let out = env.sluice(&["wait", &id, "--timeout-s", "60"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = env.sluice(&["status", &id, "--json"], None);
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["workspace"], "acme");
    assert_eq!(job["result"], json!({"x": 1}));
    let human = text(&env.sluice(&["status", &id], None).stdout);
    assert!(
        human.contains("succeeded") && human.contains("f/ok"),
        "{human}"
    );

    // A failing job: wait exits 1. With no ids it waits for the whole namespace.
    let bad = text(&env.sluice(&["enqueue", "f/bad"], None).stdout)
        .trim()
        .to_string();
    assert_eq!(env.sluice(&["wait", &bad], None).status.code(), Some(1));
    assert_eq!(env.sluice(&["wait"], None).status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_prints_ids_in_order_and_wait_times_out_with_4() {
    let env = TestEnv::new(CONFIG);
    let batch = "{\"path\":\"f/ok\",\"args\":{\"n\":1}}\n{\"path\":\"f/ok\",\"workspace\":\"w2\",\"args\":{\"n\":2}}\n\n{\"path\":\"f/keyed\",\"args\":{\"account\":7}}\n";
    let out = env.sluice(&["enqueue", "--batch", "-"], Some(batch));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ids: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 3);
    let client = env.client().await;
    let jobs = client.jobs(&ids).await.unwrap();
    let jobs: Vec<_> = jobs.into_iter().map(Option::unwrap).collect();
    assert_eq!(jobs[0].args, json!({"n": 1}));
    assert_eq!(jobs[1].workspace, "w2");
    assert_eq!(jobs[2].concurrency_key.as_deref(), Some("7"));
    assert!(jobs.iter().all(|j| j.status == "queued"));
    // No worker runs: the wait gives up.
    let out = env.sluice(&["wait", &ids[0], "--timeout-s", "0.2"], None);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    // A usage error is 2, never to be confused with a timeout.
    let out = env.sluice(&["wait", "--timeout-s"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_what_and_where_and_writes_nothing() {
    let env = TestEnv::new(CONFIG);
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["enqueue", "f/ok", "--args", "{nope"],
            None,
            "malformed JSON",
        ),
        (
            &["enqueue", "f/ok", "--args", "[1,2]"],
            None,
            "must be a JSON object",
        ),
        (&["enqueue", "f/missing"], None, "f/missing"),
        (&["enqueue", "f/keyed", "--args", "{}"], None, "`account`"),
        (
            &["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\"}\n{\"path\":\"f/ok\",\"args\":5}\n"),
            "line 2",
        ),
        (
            &["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\"}\n{\"path\":\"f/keyed\",\"args\":{}}\n"),
            "line 2",
        ),
        (
            &["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\"}\n{oops\n"),
            "line 2",
        ),
        (
            &["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\"}\n{\"path\":\"f/nope\"}\n"),
            "f/nope",
        ),
        (
            &["status", "01a213e6-0000-7000-8000-000000000000"],
            None,
            "not found",
        ),
    ];
    for (args, stdin, needle) in cases {
        let out = env.sluice(args, *stdin);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?} should fail: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: {err:?} should say {needle:?}"
        );
    }
    assert!(
        job_keys(&env).is_empty(),
        "bad input left keys behind: {:?}",
        job_keys(&env)
    );
}

#[test]
fn bad_config_and_unreachable_redis_are_named() {
    let env = TestEnv::new("[scripts.\"f/x\"]\ncommand = [\"true\"]\nconcurrency = { max = 0 }\n");
    let out = env.sluice(&["enqueue", "f/x"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("scripts.\"f/x\".concurrency.max"),
        "{}",
        text(&out.stderr)
    );

    let port = free_port();
    let cfg = write_file(
        &env.dir,
        "down.toml",
        &format!("redis_url = \"redis://127.0.0.1:{port}\"\n{CONFIG}"),
    );
    for cmd in [vec!["enqueue", "f/ok"], vec!["wait"]] {
        let out = std::process::Command::new(bin("sluice"))
            .arg("--config")
            .arg(&cfg)
            .args(&cmd)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        let err = text(&out.stderr);
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{cmd:?}: {err}");
    }
    let out = std::process::Command::new(bin("sluice-worker"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        text(&out.stderr)
    );
}

/// An idempotency key makes a retried enqueue safe: the same key within the
/// retention period gives back the first job's id and writes nothing new,
/// from the library, the command line and batch lines alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_enqueues_once() {
    let env = TestEnv::new(CONFIG);
    let client = env.client().await;
    let req =
        || sluice_producer::JobRequest::new("f/ok", json!({"n": 1})).idempotency_key("order-17");
    let first = client.enqueue(req()).await.unwrap();
    let again = client.enqueue(req()).await.unwrap();
    assert_eq!(first, again);
    // Within one batch too, next to a job without a key.
    let ids = client
        .enqueue_batch(&[
            req(),
            sluice_producer::JobRequest::new("f/ok", json!({})),
            sluice_producer::JobRequest::new("f/ok", json!({})).idempotency_key("other"),
            sluice_producer::JobRequest::new("f/ok", json!({})).idempotency_key("other"),
        ])
        .await
        .unwrap();
    assert_eq!(ids[0], first);
    assert_ne!(ids[1], first);
    assert_eq!(ids[2], ids[3]);
    let out = env.sluice(&["enqueue", "f/ok", "--idempotency-key", "order-17"], None);
    assert_eq!(text(&out.stdout).trim(), first, "{}", text(&out.stderr));
    let out = env.sluice(
        &["enqueue", "--batch", "-"],
        Some("{\"path\":\"f/ok\",\"idempotency_key\":\"order-17\"}\n{\"path\":\"f/ok\",\"idempotency_key\":\"fresh\"}\n"),
    );
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines[0], first, "{}", text(&out.stderr));
    assert_ne!(lines[1], first);
    // Three distinct jobs were written in all: first, the keyless one,
    // "other", and "fresh".
    let stored: usize = redis::cmd("HLEN")
        .arg(env.key("jobs"))
        .query(&mut env.redis())
        .unwrap();
    assert_eq!(stored, 4);
    let bad = env.sluice(&["enqueue", "f/ok", "--idempotency-key", "a\nb"], None);
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        text(&bad.stderr).contains("idempotency key"),
        "{}",
        text(&bad.stderr)
    );
}

/// `sluice retry` puts a failed job back as a new attempt under its limit;
/// a job that has not failed is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_a_failed_job_again_as_a_new_attempt() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let id = text(&env.sluice(&["enqueue", "f/second"], None).stdout)
        .trim()
        .to_string();
    let job = env
        .finish(&client, std::slice::from_ref(&id))
        .await
        .remove(0);
    assert_eq!((job.status.as_str(), job.attempt), ("failed", 1));
    let out = env.sluice(&["retry", &id], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job = env
        .finish(&client, std::slice::from_ref(&id))
        .await
        .remove(0);
    assert_eq!((job.status.as_str(), job.attempt), ("succeeded", 2));
    assert_eq!(job.result, Some(json!("ok")));
    // Out of the failed list, whose entry names its key, and into the
    // succeeded one.
    let listed = |status: &str| -> Vec<String> {
        redis::cmd("LRANGE")
            .arg(env.key(&format!("idx:status:{status}")))
            .arg(0)
            .arg(-1)
            .query(&mut env.redis())
            .unwrap()
    };
    assert_eq!(listed("failed"), Vec::<String>::new());
    assert_eq!(
        listed("succeeded"),
        [format!("{id} {}", job.concurrency_key.clone().unwrap())]
    );
    // Succeeded now: nothing to retry.
    let out = env.sluice(&["retry", &id], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("succeeded"),
        "{}",
        text(&out.stderr)
    );
    let out = env.sluice(&["retry", "01a213e6-0000-7000-8000-000000000000"], None);
    assert_eq!(out.status.code(), Some(3));
    // The counters moved with it: one job, succeeded, none active.
    let stats: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(env.key("stats"))
        .query(&mut env.redis())
        .unwrap();
    assert_eq!(
        (
            stats.get("active"),
            stats.get("failed"),
            stats.get("succeeded")
        ),
        (Some(&0), Some(&0), Some(&1)),
        "{stats:?}"
    );
}
