//! Limits set at run time: `sluice limits set` overrides the stamped limit of
//! every job of a key, waiting or future. Lowered while jobs wait, it stops no
//! running job and admits the next only once the key is under it; raised, it
//! admits waiters at once. Judged from the commands' own logs.

use sluice_tests::*;

/// A worker-less world whose `f/slow` jobs (key `s`, stamped `max`) log
/// their own start and end and run for `secs`.
fn world(max: u32, secs: f64) -> (Scratch, std::path::PathBuf, TestEnv) {
    let dir = Scratch::new("override");
    let log = dir.path("commands.log");
    let env = TestEnv::new(&format!(
        r#"
[worker]
concurrency = 8

[scripts."f/slow"]
command = {}
concurrency = {{ max = {max}, window_s = 0, key = "s" }}
"#,
        logging_command(&log, secs)
    ));
    (dir, log, env)
}

/// Each job's (start, end) from its own log, by start.
fn spans(log: &std::path::Path, ids: &[sluice_producer::JobId]) -> Vec<(i64, i64)> {
    let lines = read_command_log(log);
    let mut spans: Vec<(i64, i64)> = ids
        .iter()
        .map(|id| {
            let at = |kind: &str| {
                lines
                    .iter()
                    .find(|l| &l.id == id && l.kind == kind)
                    .unwrap()
                    .ns
            };
            (at("START"), at("END"))
        })
        .collect();
    spans.sort();
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_lowered_while_jobs_wait_then_raised_again() {
    let (_dir, log, env) = world(3, 1.5);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/slow", json!({}), 6).await;
    let _w = env.worker(&[], &[]);
    wait_until("three jobs to start", || {
        read_command_log(&log)
            .iter()
            .filter(|l| l.kind == "START")
            .count()
            == 3
    });
    // Lowered to 1 while three run and three wait.
    let out = env.sluice(&["limits", "set", "s", "--max", "1"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.sluice(&["limits", "s", "--json"], None);
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (state["max"].as_i64(), state["set"]["max"].as_i64()),
        (Some(3), Some(1)),
        "{state}"
    );
    wait_until("a fourth job to start", || {
        read_command_log(&log)
            .iter()
            .filter(|l| l.kind == "START")
            .count()
            == 4
    });
    // Raised again: the last two are admitted at once, beside the fourth.
    let out = env.sluice(&["limits", "set", "s", "--max", "3"], None);
    assert!(out.status.success());
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let spans = spans(&log, &ids);
    // Lowered: the fourth started only once the first three had all ended.
    let first_three_end = spans[..3].iter().map(|s| s.1).max().unwrap();
    assert!(spans[3].0 > first_three_end, "{spans:?}");
    // Raised: the fifth and sixth started while the fourth still ran.
    assert!(
        spans[4].0 < spans[3].1 && spans[5].0 < spans[3].1,
        "{spans:?}"
    );
    // Unset: back to the stamps.
    let out = env.sluice(&["limits", "unset", "s"], None);
    assert!(out.status.success());
    let out = env.sluice(&["limits", "s", "--json"], None);
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(state.get("set").is_none(), "{state}");
}

/// Waiting jobs keep their stamped limit underneath: once a raised limit is
/// unset, those already waiting go by the stamp again, one at a time here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsetting_a_raised_limit_applies_to_jobs_already_waiting() {
    let (_dir, log, env) = world(1, 1.0);
    let out = env.sluice(&["limits", "set", "s", "--max", "2"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/slow", json!({}), 5).await;
    let _w = env.worker(&[], &[]);
    wait_until("two jobs to start", || {
        read_command_log(&log)
            .iter()
            .filter(|l| l.kind == "START")
            .count()
            == 2
    });
    let out = env.sluice(&["limits", "unset", "s"], None);
    assert!(out.status.success());
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let spans = spans(&log, &ids);
    // The three that waited ran one at a time, each after the one before.
    for w in spans[2..].windows(2) {
        assert!(
            w[1].0 > w[0].1,
            "two of the waiting jobs overlapped: {spans:?}"
        );
    }
}
