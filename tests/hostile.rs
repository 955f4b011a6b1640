//! The bad-input matrix: hostile values through the command line, the
//! library, config files, the environment, batch files, args and keys, and
//! records damaged in Redis. Each is refused with an error that names the
//! fault (exit 3 for the command line) and leaves nothing in Redis; a
//! damaged record fails its job with a reason, tells its flow, frees its
//! slot, and the worker goes on serving.

use sluice_producer::JobRequest;
use sluice_tests::*;

const CONFIG: &str = r#"
[scripts."f/ok"]
command = ["sh", "-c", "cat"]

[scripts."f/keyed"]
command = ["sh", "-c", "cat"]
concurrency = { max = 1, window_s = 0, key = "$args[t]" }

[flows."f/flow"]
concurrency = { max = 1, key = "run/$args[t]" }
[[flows."f/flow".steps]]
id = "call"
script = "f/keyed"
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn namespace_keys(env: &TestEnv) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(env.key("*"))
        .query(&mut env.redis())
        .unwrap()
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_refuses_hostile_input_naming_it_and_writes_nothing() {
    let env = TestEnv::new(CONFIG);
    // Too long for one argv string (128 KiB on Linux): they go in batches.
    let big_key = format!(
        "{{\"path\":\"f/keyed\",\"args\":{{\"t\":\"{}\"}}}}\n",
        "k".repeat(4 << 20)
    );
    let big_args = format!(
        "{{\"path\":\"f/ok\",\"args\":{{\"blob\":\"{}\"}}}}\n",
        "x".repeat(2 << 20)
    );
    let deep = nested(100);
    let long_ws = "w".repeat(200);
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec!["enqueue", "f/ok", "--args", "{nope"],
            None,
            "malformed JSON",
        ),
        (
            vec!["enqueue", "f/ok", "--args", "[1]"],
            None,
            "must be a JSON object",
        ),
        (
            vec!["enqueue", "f/ok", "--args", "\"s\""],
            None,
            "must be a JSON object",
        ),
        (vec!["enqueue", "f/missing"], None, "f/missing"),
        (vec!["enqueue", ""], None, "unknown path"),
        (vec!["enqueue", "f/keyed"], None, "`t`"),
        (
            vec!["enqueue", "f/keyed", "--args", r#"{"t":""}"#],
            None,
            "empty key (from argument `t`)",
        ),
        (
            vec!["enqueue", "f/keyed", "--args", r#"{"t":"acme\nbeta"}"#],
            None,
            "`t` holds a control character (U+000A)",
        ),
        (
            vec!["enqueue", "f/keyed", "--args", r#"{"t":"a\u0000b"}"#],
            None,
            "`t` holds a control character (U+0000)",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some(&big_key),
            "more than 512",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some(&big_args),
            "more than 1048576",
        ),
        (
            vec!["enqueue", "f/ok", "--args", &deep],
            None,
            "nested more than 64",
        ),
        (
            vec!["enqueue", "f/ok", "--workspace", ""],
            None,
            "workspace",
        ),
        (
            vec!["enqueue", "f/ok", "--workspace", "a\tb"],
            None,
            "workspace",
        ),
        (
            vec!["enqueue", "f/ok", "--workspace", &long_ws],
            None,
            "workspace",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\",\"delay_s\":1e13}\n"),
            "366 days",
        ),
        (vec!["enqueue", "f/flow"], None, "`t`"),
        (
            vec!["enqueue", "f/keyed", "--args", r#"{"t":"flow:x"}"#],
            None,
            "belong to flow runs",
        ),
        (
            vec!["enqueue", "f/flow", "--args", r#"{"t":""}"#],
            None,
            "empty key",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\",\"arg\":{}}\n"),
            "unknown field \"arg\"",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\"}\n{\"path\":\"f/ok\",\"delay\":5}\n"),
            "line 2: unknown field \"delay\"",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\",\"delay_s\":\"x\"}\n"),
            "delay_s",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("[1]\n"),
            "line 1: must be a JSON object",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("\n\n"),
            "holds no job",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\"}\n{\"path\":\"f/keyed\",\"args\":{\"t\":\"a\\nb\"}}\n"),
            "line 2",
        ),
        (
            vec!["enqueue", "--batch", "-"],
            Some("{\"path\":\"f/ok\",\"workspace\":7}\n"),
            "workspace",
        ),
        (
            vec!["enqueue", "--batch", "/nonexistent/jobs.jsonl"],
            None,
            "/nonexistent/jobs.jsonl",
        ),
        (
            vec!["status", "01a213e6-0000-7000-8000-000000000000"],
            None,
            "not found",
        ),
    ];
    for (args, stdin, needle) in &cases {
        let out = env.sluice(args, *stdin);
        let err = text(&out.stderr);
        let shown: Vec<String> = args.iter().map(|a| a.chars().take(60).collect()).collect();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{shown:?} should fail with 3: {err}"
        );
        assert!(
            err.contains(needle),
            "{shown:?}: {err:?} should say {needle:?}"
        );
        assert!(
            namespace_keys(&env).is_empty(),
            "{shown:?} left keys behind: {:?}",
            namespace_keys(&env)
        );
    }
}

/// Flag values out of range are usage errors (exit 2), like unknown flags,
/// and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flag_values_are_usage_errors() {
    let env = TestEnv::new(CONFIG);
    for args in [
        vec!["enqueue", "f/ok", "--delay-s", "-1"],
        vec!["enqueue", "f/ok", "--delay-s", "1e300"],
        vec!["enqueue", "f/ok", "--delay-s", "x"],
        vec!["wait", "--timeout-s", "1.8e19"],
        vec!["wait", "--timeout-s", "-1"],
        vec!["runs", "--limit", "-1"],
        vec!["runs", "--status", "done"],
    ] {
        let out = env.sluice(&args, None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(args[2]) || err.contains("invalid"),
            "{args:?}: {err}"
        );
    }
    assert!(namespace_keys(&env).is_empty());
}

#[test]
fn bad_configs_are_refused_naming_the_setting() {
    // (config body, environment, what the error must name)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "[scripts.\"a\"]\ncommand = [\"true\"]\nconcurrency = { max = 2, windows_s = 60 }",
            &[],
            "windows_s",
        ),
        ("[scripts.\"a\"]\ncomand = [\"true\"]", &[], "comand"),
        (
            "[scripts.\"a\"]\ncommand = [\"true\"]\nconcurrency = { max = 1.5 }",
            &[],
            "max",
        ),
        (
            "[scripts.\"a\"]\ncommand = [\"true\"]\nconcurrency = { max = \"2\" }",
            &[],
            "max",
        ),
        (
            "[scripts.\"a\"]\ncommand = [\"true\"]\nconcurrency = { max = 1, window_s = 1e300 }",
            &[],
            "window_s",
        ),
        ("[worker]\nlease_s = 0.01", &[], "worker.lease_s"),
        ("", &[("SLUICE_WORKER__CONCURENCY", "4")], "concurency"),
        (
            "[scripts.\"a\"]\ncommand = [\"true\"]\ntimeout_s = \"60\"",
            &[],
            "timeout_s",
        ),
        (
            "[scripts.\"a\"]\ncommand = [\"true\"]\nconcurrency = { max = 1, window_s = true }",
            &[],
            "window_s",
        ),
    ];
    for (body, env, needle) in cases {
        let t = TestEnv::new(body);
        let out = std::process::Command::new(bin("sluice"))
            .arg("--config")
            .arg(&t.config_path)
            .args(["enqueue", "a"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{body:?}: {err}");
        assert!(
            err.contains(needle),
            "{body:?}: {err:?} should name {needle:?}"
        );
        // The worker refuses it the same way, before touching Redis.
        let out = std::process::Command::new(bin("sluice-worker"))
            .arg("--config")
            .arg(&t.config_path)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{body:?}");
        assert!(namespace_keys(&t).is_empty());
    }
    // A URL's password never shows in an error.
    let dir = std::env::temp_dir().join(format!("sluice-cfg-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_file(&dir, "s.toml", "redis_url = \"nope://u:hunter2@h:1\"\n");
    let out = std::process::Command::new(bin("sluice"))
        .arg("--config")
        .arg(&cfg)
        .arg("wait")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains("redis_url") && !err.contains("hunter2"),
        "{err}"
    );
    // No config file at all: said so.
    let out = std::process::Command::new(bin("sluice"))
        .current_dir(&dir)
        .env_remove("SLUICE_CONFIG")
        .arg("wait")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no config file"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_refuses_what_the_command_line_cannot_even_send() {
    let env = TestEnv::new(CONFIG);
    let client = env.client().await;
    // Deeper than serde_json itself would parse: built in code.
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({ "a": deep });
    }
    let cases = [
        (JobRequest::new("f/ok", deep), "nested more than 64"),
        (
            JobRequest::new("f/ok", json!(null)),
            "must be a JSON object",
        ),
        (
            JobRequest::new("f/keyed", json!({"t": {"k": "a\u{7f}"}})),
            "control character",
        ),
        (
            JobRequest::new("f/keyed", json!({"t": "x\u{85}y"})),
            "control character",
        ),
    ];
    for (req, needle) in cases {
        let e = client.enqueue(req).await.unwrap_err().to_string();
        assert!(e.contains(needle), "{e:?} should say {needle:?}");
    }
    // In a batch, the bad request is named by its place, and nothing lands.
    let reqs = vec![
        JobRequest::new("f/ok", json!({})),
        JobRequest::new("f/keyed", json!({"t": ""})),
    ];
    let e = client.enqueue_batch(&reqs).await.unwrap_err().to_string();
    assert!(e.contains("job #2") && e.contains("empty key"), "{e}");
    assert!(namespace_keys(&env).is_empty());
}

/// A batch that Redis stops taking part way (here: out of memory) reports
/// the ids of the jobs it did write, which are real and run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_part_way_names_what_it_wrote() {
    let env = TestEnv::new(CONFIG);
    let client = env.client().await;
    client
        .enqueue(JobRequest::new("f/ok", json!({})))
        .await
        .unwrap();
    let mut r = env.redis();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut r).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Room for the first call of 250 jobs to start, not for the second.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + 1_500_000)
        .query(&mut r)
        .unwrap();
    let blob = "x".repeat(4000);
    let reqs: Vec<JobRequest> = (0..600)
        .map(|_| JobRequest::new("f/ok", json!({ "blob": blob })))
        .collect();
    let e = client.enqueue_batch(&reqs).await.unwrap_err();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query(&mut r)
        .unwrap();
    let sluice_producer::Error::PartlyEnqueued {
        written, in_doubt, ..
    } = &e
    else {
        panic!("expected a partial batch, got {e}");
    };
    assert_eq!((written.len(), in_doubt.len()), (250, 0), "{e}");
    let jobs = client.jobs(written).await.unwrap();
    assert!(jobs.iter().all(|j| j.is_some()));
    assert!(e.to_string().contains("only the first 250 jobs"), "{e}");
}

const FLOWS: &str = r#"
[worker]
concurrency = 4

[scripts."f/keyed"]
command = ["sh", "-c", "cat"]
concurrency = { max = 1, window_s = 0, key = "$args[t]" }

[scripts."f/hold"]
command = ["sh", "-c", "sleep 1; cat"]
concurrency = { max = 1, window_s = 0, key = "$args[t]" }

[flows."f/missing"]
concurrency = { max = 1 }
[[flows."f/missing".steps]]
id = "list"
command = ["sh", "-c", "echo '{\"x\": 1}'"]
[[flows."f/missing".steps]]
id = "call"
script = "f/keyed"
args = { other = "$results.list.x" }

[flows."f/self"]
concurrency = { max = 1, key = "$args[t]" }
[[flows."f/self".steps]]
id = "echo"
command = ["cat"]
[[flows."f/self".steps]]
id = "call"
script = "f/keyed"
args = { t = "$results.echo.t" }

[flows."f/cross"]
concurrency = { max = 1, key = "$args[from]" }
[[flows."f/cross".steps]]
id = "echo"
command = ["sh", "-c", "sleep 0.3; cat"]
[[flows."f/cross".steps]]
id = "call"
script = "f/hold"
args = { t = "$results.echo.to" }

[flows."f/wait"]
[[flows."f/wait".steps]]
id = "call"
script = "f/keyed"
"#;

/// Steps that cannot be planned fail their run, naming the step and the
/// reason, and the flow's next run is not held up behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_cannot_be_planned_fails_its_run_and_blocks_nothing() {
    let env = TestEnv::new(FLOWS);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = client
        .enqueue_batch(&[
            JobRequest::new("f/missing", json!({"t": "k1"})),
            JobRequest::new("f/missing", json!({"t": "k1"})),
        ])
        .await
        .unwrap();
    for run in env.finish(&client, &ids).await {
        assert_eq!(run.status, "failed", "{run:?}");
        let why = run.error.unwrap_or_default();
        assert!(why.contains("step call") && why.contains("`t`"), "{why}");
    }
    let limits = client.limits(None).await.unwrap();
    assert!(
        limits.iter().all(|l| l.held == 0 && l.waiting == 0),
        "{limits:?}"
    );
}

/// Flow runs' keys are a space of their own: a run never waits on a slot
/// another run holds. A step with the very key of its run, and two runs
/// whose steps each need the key the other run is limited by, all finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_runs_never_deadlock_on_keys() {
    let env = TestEnv::new(FLOWS);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = client
        .enqueue_batch(&[
            JobRequest::new("f/self", json!({"t": "k1"})),
            JobRequest::new("f/cross", json!({"from": "x", "to": "y"})),
            JobRequest::new("f/cross", json!({"from": "y", "to": "x"})),
        ])
        .await
        .unwrap();
    let runs = env.finish(&client, &ids).await;
    assert!(runs.iter().all(|r| r.status == "succeeded"), "{runs:#?}");
    assert_eq!(runs[0].concurrency_key.as_deref(), Some("flow:k1"));
}

/// A step whose record is damaged in Redis while it waits fails with a
/// reason, its flow hears of it, its key's slot is freed, and the worker
/// goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_step_record_fails_the_step_and_tells_its_flow() {
    let env = TestEnv::new(FLOWS);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    // The key is held, so the flow's step waits on it.
    let hold = client
        .enqueue(JobRequest::new("f/hold", json!({"t": "x"})))
        .await
        .unwrap();
    wait_running(&client, std::slice::from_ref(&hold), 1).await;
    let run = client
        .enqueue(JobRequest::new("f/wait", json!({"t": "x"})))
        .await
        .unwrap();
    let mut r = env.redis();
    let step = loop {
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(env.key("jobs"))
            .query(&mut r)
            .unwrap();
        if let Some((id, _)) = all.iter().find(|(_, spec)| spec.contains(run.as_str())) {
            break id.clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // Its args cut short: the spec is no longer JSON.
    let spec: String = redis::cmd("HGET")
        .arg(env.key("jobs"))
        .arg(&step)
        .query(&mut r)
        .unwrap();
    let cut = spec.find(",\"args\":").unwrap();
    let _: () = redis::cmd("HSET")
        .arg(env.key("jobs"))
        .arg(&step)
        .arg(format!("{},\"args\":{{\"t\":", &spec[..cut]))
        .query(&mut r)
        .unwrap();
    let flow = env
        .finish(&client, std::slice::from_ref(&run))
        .await
        .remove(0);
    assert_eq!(flow.status, "failed");
    assert!(
        flow.error.unwrap_or_default().contains("corrupt"),
        "{}",
        env.logs()
    );
    let step = client.job(&step).await.unwrap().unwrap();
    assert_eq!(step.status, "failed");
    // The key is free again, and the worker still serves it.
    let next = client
        .enqueue(JobRequest::new("f/keyed", json!({"t": "x"})))
        .await
        .unwrap();
    let next = env.finish(&client, &[next]).await.remove(0);
    assert_eq!(next.status, "succeeded");
}

/// A Redis that may evict keys when full could drop jobs, leases or slots:
/// the worker says so when it starts.
#[test]
fn a_worker_warns_when_redis_may_evict_its_keys() {
    let port = free_port().to_string();
    let redis = RedisServer::spawn(
        &["--port", &port, "--maxmemory-policy", "allkeys-lru"],
        format!("redis://127.0.0.1:{port}"),
    );
    let env = TestEnv::with_redis(redis, CONFIG);
    let worker = env.worker(&[], &[]);
    worker.wait_for_log("worker started");
    let log = worker.log_text();
    assert!(
        log.contains("maxmemory-policy") && log.contains("allkeys-lru"),
        "{log}"
    );
}
