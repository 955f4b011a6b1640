//! Keys whose limit does not bind are admitted and ended by their running
//! count alone (held.lua); a key that binds waits in line through its own
//! keys. Judged from the commands' own logs, with two worker processes.

use std::collections::HashMap;

use sluice_producer::JobId;
use sluice_tests::*;

fn config(log: &std::path::Path) -> String {
    let cmd = logging_command(log, 0.05);
    keyed_config(
        8,
        &[
            ("f/one", &cmd, 1, "one/$args[k]"),
            ("f/two", &cmd, 2, "two/$args[k]"),
        ],
    )
}

/// A config of `concurrency` per worker and scripts given as (path,
/// command, max, key template), none with a window.
fn keyed_config(concurrency: u32, scripts: &[(&str, &str, u32, &str)]) -> String {
    let mut out = format!("[worker]\nconcurrency = {concurrency}\n");
    for (path, cmd, max, key) in scripts {
        out += &format!(
            "\n[scripts.\"{path}\"]\ncommand = {cmd}\nconcurrency = {{ max = {max}, window_s = 0, key = \"{key}\" }}\n"
        );
    }
    out
}

/// Each job's span from its command's own lines: its START to its last line
/// of any kind (END, or a grandchild's heartbeat).
fn spans(lines: &[LogLine]) -> HashMap<String, (i64, i64)> {
    let mut out: HashMap<String, (i64, i64)> = HashMap::new();
    for l in lines {
        let e = out.entry(l.id.clone()).or_insert((i64::MAX, i64::MIN));
        if l.kind == "START" {
            e.0 = e.0.min(l.ns);
        }
        e.1 = e.1.max(l.ns);
    }
    out
}

/// The most of `ids` alive at once.
fn most_at_once(spans: &HashMap<String, (i64, i64)>, ids: &[JobId]) -> usize {
    let of: Vec<(i64, i64)> = ids.iter().map(|id| spans[id.as_str()]).collect();
    of.iter()
        .map(|&(t, _)| of.iter().filter(|&&(s, e)| s <= t && t <= e).count())
        .max()
        .unwrap_or(0)
}

/// Nothing of the keys is left once their jobs are done: no running count,
/// no slots or wait key.
fn assert_keys_left_nothing(env: &TestEnv) {
    let mut r = env.redis();
    let counts: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(env.key("running"))
        .query(&mut r)
        .unwrap();
    assert!(counts.is_empty(), "running counts left: {counts:?}");
    for pattern in ["slots:*", "wait:*"] {
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(env.key(pattern))
            .query(&mut r)
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// A key with max 1 and no window, among keys that never bind: its jobs wait
/// in its line while the worker has room, and each end hands the slot to the
/// next waiter, in enqueue order, never two at once; the other keys' jobs
/// run alongside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_key_hands_each_end_to_its_next_waiter() {
    let scratch = Scratch::new("keyed-one");
    let log = scratch.path("log");
    let env = TestEnv::new(&config(&log));
    let client = env.client().await;
    let mut one = Vec::new();
    let mut free = Vec::new();
    for i in 0..8 {
        one.extend(env.enqueue(&client, "f/one", json!({"k": "a"}), 1).await);
        free.extend(env.enqueue(&client, "f/two", json!({"k": i}), 2).await);
    }
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let jobs = env
        .finish(&client, &[one.clone(), free.clone()].concat())
        .await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");

    let spans = spans(&read_command_log(&log));
    assert_eq!(most_at_once(&spans, &one), 1, "key one/a ran two at once");
    // Admission order: two jobs started by one admission may log their
    // STARTs either way round, so the order is Sluice's record of it.
    assert_started_in_order(&jobs[..one.len()]);
    // The free keys did not wait for one/a: some ran while it ran.
    let alongside = free.iter().filter(|id| {
        let (s, e) = spans[id.as_str()];
        one.iter().any(|o| {
            let (os, oe) = spans[o.as_str()];
            s <= oe && os <= e
        })
    });
    assert!(alongside.count() > 0);
    assert_keys_left_nothing(&env);
}

/// One key, max 2, no window, more jobs than that and room for all of them:
/// two are admitted by the count, the rest wait in line, and the key never
/// runs three at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_binds_mid_batch_waits_in_order() {
    let scratch = Scratch::new("keyed-two");
    let log = scratch.path("log");
    let env = TestEnv::new(&config(&log));
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/two", json!({"k": "x"}), 12).await;
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let spans = spans(&read_command_log(&log));
    assert_eq!(most_at_once(&spans, &ids), 2);
    assert_started_in_order(&jobs);
    assert_keys_left_nothing(&env);
}

/// A keyed job enqueued ready now carries its stamped limit in its state,
/// where admission reads it (one lookup per batch, not a search of each
/// spec); a malformed one is not trusted: the spec's limit holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_keyed_job_carries_its_limit_and_a_malformed_one_is_not_trusted() {
    let scratch = Scratch::new("keyed-stamp");
    let log = scratch.path("log");
    let env = TestEnv::new(&config(&log));
    let client = env.client().await;
    let two = env.enqueue(&client, "f/two", json!({"k": "s"}), 1).await;
    let mut r = env.redis();
    let state: String = redis::cmd("HGET")
        .arg(env.key("state"))
        .arg(two[0].as_str())
        .query(&mut r)
        .unwrap();
    assert!(state.starts_with("queued 0 "), "{state}");
    assert!(state.ends_with(" limit=2/0"), "{state}");

    // Key one/m allows 1 at a time; its jobs' states claim otherwise, in
    // forms that do not parse (a max of 0, a sign, too many digits, junk).
    let one = env.enqueue(&client, "f/one", json!({"k": "m"}), 5).await;
    let claims = [
        "limit=0/0",
        "limit=-5/0",
        "limit=99999999999999999/0",
        "limit=5x/0",
        "limit=5/0 extra",
    ];
    for (id, claim) in one.iter().zip(claims) {
        let state: String = redis::cmd("HGET")
            .arg(env.key("state"))
            .arg(id.as_str())
            .query(&mut r)
            .unwrap();
        let at = state.find(" limit=").expect("a limit word");
        let crafted = format!("{} {claim}", &state[..at]);
        let _: () = redis::cmd("HSET")
            .arg(env.key("state"))
            .arg(id.as_str())
            .arg(crafted)
            .query(&mut r)
            .unwrap();
    }
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let jobs = env.finish(&client, &[two, one.clone()].concat()).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let spans = spans(&read_command_log(&log));
    assert_eq!(most_at_once(&spans, &one), 1, "key one/m ran two at once");
    assert_keys_left_nothing(&env);
}

/// An end is recorded by its key's count alone, without the key's own keys
/// in the call, unless the worker expects it to need them. Here the key
/// begins to bind while its job runs on a worker that has not seen it bind:
/// the script leaves that end unrecorded, the worker sends it again with the
/// key declared, and the slot goes to the job waiting for it, never two at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_whose_key_began_to_bind_meanwhile_is_sent_again_declared() {
    let scratch = Scratch::new("keyed-redo");
    let log = scratch.path("log");
    let gate = scratch.path("gate");
    let gated = format!(
        r#"log={log:?}
echo "START $SLUICE_JOB_ID $SLUICE_ATTEMPT $$ $(date +%s%N)" >> "$log"
while [ ! -e {gate:?} ]; do sleep 0.01; done
echo "END $SLUICE_JOB_ID $SLUICE_ATTEMPT $$ $(date +%s%N)" >> "$log"
echo '"done"'
"#,
        log = log.display().to_string(),
        gate = gate.display().to_string()
    );
    let held = format!("[\"sh\", \"-c\", {gated:?}]");
    let next = logging_command(&log, 0.0);
    let body = keyed_config(
        1,
        &[
            ("g/held", &held, 1, "g/$args[k]"),
            ("g/next", &next, 1, "g/$args[k]"),
        ],
    );
    let env = TestEnv::new(&body);
    let client = env.client().await;
    let first = env.worker(&[], &[("RUST_LOG", "info,sluice_worker::ack=debug")]);
    let held = env.enqueue(&client, "g/held", json!({"k": "x"}), 1).await;
    wait_running(&client, &held, 1).await;
    // The first worker is full: only the second takes the next job, finds
    // the key full, and puts the job in its line.
    let _second = env.worker(&[], &[]);
    let next = env.enqueue(&client, "g/next", json!({"k": "x"}), 1).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while !client
        .job(next[0].as_str())
        .await
        .unwrap()
        .is_some_and(|j| j.status == "waiting")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the next job never waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::write(&gate, "").unwrap();
    let jobs = env
        .finish(&client, &[held.clone(), next.clone()].concat())
        .await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    first.wait_for_log("ends sent again with their keys declared");
    let spans = spans(&read_command_log(&log));
    let both = [held, next].concat();
    assert_eq!(most_at_once(&spans, &both), 1, "key g/x ran two at once");
    assert_keys_left_nothing(&env);
}
