//! Inspection: `runs` filters, `limits` during a throttled run, retention,
//! metrics and health, against a real Redis and worker processes.

use std::io::{Read, Write};
use std::time::Duration;

use sluice_producer::{JobRequest, RunsQuery, Status};
use sluice_tests::*;

const CONFIG: &str = r#"
[worker]
concurrency = 4

[scripts."f/a"]
command = ["true"]
concurrency = { max = 1, window_s = 600, key = "$workspace/acct/$args[acct]" }

[scripts."f/b"]
command = ["true"]

[scripts."f/fail"]
command = ["false"]
max_attempts = 1
"#;

fn req(path: &str, ws: &str, args: serde_json::Value) -> JobRequest {
    let mut r = JobRequest::new(path, args);
    r.workspace = ws.into();
    r
}

fn ids_of(jobs: &[sluice_producer::Job]) -> Vec<sluice_producer::JobId> {
    jobs.iter().map(|j| j.id.clone()).collect()
}

/// The jobs `runs` lists for concurrency key `key`, at most `limit`.
async fn of_key(
    client: &sluice_producer::Client,
    key: impl Into<String>,
    limit: usize,
) -> Vec<sluice_producer::Job> {
    client
        .runs(&RunsQuery {
            concurrency_key: Some(key.into()),
            limit,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Newest first, as ids are UUIDv7 made in enqueue order.
fn newest_first<T: Ord>(mut ids: Vec<T>) -> Vec<T> {
    ids.sort();
    ids.reverse();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filters_return_exactly_the_right_jobs() {
    let env = TestEnv::new(CONFIG);
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let mut a1 = Vec::new();
    let mut b_w1 = Vec::new();
    let mut b_w2 = Vec::new();
    let mut failed = Vec::new();
    // One at a time, so that creation times are distinct and ordered.
    for i in 0..3 {
        b_w1.push(
            client
                .enqueue(req("f/b", "w1", json!({ "i": i })))
                .await
                .unwrap(),
        );
        b_w2.push(
            client
                .enqueue(req("f/b", "w2", json!({ "i": i })))
                .await
                .unwrap(),
        );
        failed.push(
            client
                .enqueue(req("f/fail", "w1", json!({})))
                .await
                .unwrap(),
        );
    }
    a1.push(
        client
            .enqueue(req("f/a", "w1", json!({"acct": 1})))
            .await
            .unwrap(),
    );
    env.finish(
        &client,
        &[b_w1.clone(), b_w2.clone(), failed.clone(), a1.clone()].concat(),
    )
    .await;
    // These stay unfinished: one waits on its key, one is scheduled far ahead.
    let waiting = client
        .enqueue(req("f/a", "w1", json!({"acct": 1})))
        .await
        .unwrap();
    a1.push(waiting.clone());
    let mut later = req("f/b", "w2", json!({}));
    later.delay_ms = 600_000;
    let scheduled = client.enqueue(later).await.unwrap();
    wait_until("the second f/a job to wait", || {
        let rt = tokio::runtime::Handle::current();
        let status = tokio::task::block_in_place(|| rt.block_on(client.job(&waiting)))
            .unwrap()
            .unwrap()
            .status;
        status == "waiting"
    });

    let q = |f: fn(&mut RunsQuery)| {
        let mut q = RunsQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let run = |q: RunsQuery| {
        let client = client.clone();
        async move { ids_of(&client.runs(&q).await.unwrap()) }
    };
    assert_eq!(
        run(q(|q| q.concurrency_key = Some("w1/acct/1".into()))).await,
        newest_first(a1.clone())
    );
    assert_eq!(
        run(q(|q| q.status = Some(Status::Failed))).await,
        newest_first(failed.clone())
    );
    assert_eq!(
        run(q(|q| q.status = Some(Status::Waiting))).await,
        vec![waiting.clone()]
    );
    assert_eq!(
        run(q(|q| q.status = Some(Status::Scheduled))).await,
        vec![scheduled.clone()]
    );
    assert_eq!(
        run(q(|q| q.path = Some("f/b".into()))).await,
        newest_first([b_w1.clone(), b_w2.clone(), vec![scheduled.clone()]].concat())
    );
    assert_eq!(
        run(q(|q| q.workspace = Some("w2".into()))).await,
        newest_first([b_w2.clone(), vec![scheduled.clone()]].concat())
    );
    let mut both = q(|q| q.workspace = Some("w2".into()));
    both.status = Some(Status::Succeeded);
    assert_eq!(run(both).await, newest_first(b_w2.clone()));
    let all = run(q(|_| {})).await;
    assert_eq!(all.len(), 3 + 3 + 3 + 2 + 1);
    assert_eq!(all, newest_first(all.clone()));
    let mut two = q(|_| {});
    two.limit = 2;
    assert_eq!(run(two).await, all[..2].to_vec());

    // The command line prints the promised fields, one object a line.
    let out = env.sluice(&["runs", "--concurrency-key", "w1/acct/1", "--json"], None);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for field in [
        "id",
        "path",
        "workspace",
        "concurrency_key",
        "status",
        "created_at",
        "started_at",
        "ended_at",
    ] {
        assert!(
            lines[0].get(field).is_some(),
            "missing {field}: {}",
            lines[0]
        );
    }
    assert_eq!(lines[0]["id"], json!(waiting));
    assert_eq!(lines[0]["started_at"], serde_json::Value::Null);
    assert_eq!(lines[1]["status"], "succeeded");
    // A status that does not exist is a usage error, and the help lists them.
    let bad = env.sluice(&["runs", "--status", "done"], None);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("succeeded") && err.contains("waiting"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_report_held_and_waiting_during_a_throttled_run() {
    let env = TestEnv::new(
        r#"
[scripts."f/slow"]
command = ["sleep", "300"]
concurrency = { max = 1, window_s = 0 }

[scripts."f/windowed"]
command = ["true"]
concurrency = { max = 2, window_s = 600 }
"#,
    );
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let slow = env.enqueue(&client, "f/slow", json!({}), 3).await;
    let windowed = env.enqueue(&client, "f/windowed", json!({}), 5).await;
    let first_two = env.finish(&client, &windowed[..2]).await;
    wait_until("two slow jobs waiting and three windowed", || {
        let out = env.sluice(&["limits", "--json"], None);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains(r#""held":1,"waiting":2"#) && text.contains(r#""held":2,"waiting":3"#)
    });
    let out = env.sluice(&["limits", "--json"], None);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], "default/script/f/slow");
    assert_eq!(
        (rows[0]["max"].clone(), rows[0]["window_s"].clone()),
        (json!(1), json!(0.0))
    );
    assert_eq!(
        rows[0]["next_free_at"],
        serde_json::Value::Null,
        "only a running job holds it"
    );
    assert_eq!(rows[1]["key"], "default/script/f/windowed");
    let frees = first_two
        .iter()
        .map(|j| j.ended_at.unwrap() + 600_000)
        .min()
        .unwrap();
    assert_eq!(rows[1]["next_free_at"], json!(frees));
    let one = env.sluice(&["limits", "default/script/f/slow"], None);
    assert!(String::from_utf8_lossy(&one.stdout).contains("default/script/f/slow"));
    for id in slow.iter().chain(&windowed[2..]) {
        client.cancel(id).await.unwrap();
    }
}

/// How a version before entries in the status lists recorded a job of
/// key `key`: in the key index (`own_set` false) or, older still, in a set
/// of the key's own; and its status list entry, the bare id.
fn as_older_version(env: &TestEnv, job: &sluice_producer::Job, own_set: bool) {
    let key = job.concurrency_key.clone().unwrap();
    let mut r = env.redis();
    if own_set {
        redis::cmd("ZADD")
            .arg(env.key(&format!("idx:key:{key}")))
            .arg(job.created_at.unwrap())
            .arg(&job.id)
            .query::<()>(&mut r)
            .unwrap();
    } else {
        redis::cmd("ZADD")
            .arg(env.key("idx:keys"))
            .arg(0)
            .arg(sluice_shared::key_index::member(
                &key,
                job.created_at.unwrap(),
                &job.id,
            ))
            .query::<()>(&mut r)
            .unwrap();
    }
    let list = env.key(&format!("idx:status:{}", job.status.as_str()));
    let at: usize = redis::cmd("LPOS")
        .arg(&list)
        .arg(format!("{} {key}", job.id))
        .query(&mut r)
        .unwrap();
    redis::cmd("LSET")
        .arg(&list)
        .arg(at)
        .arg(&job.id)
        .query::<()>(&mut r)
        .unwrap();
}

/// Whether an older version's index still holds job `id` of `key`.
fn in_older_index(env: &TestEnv, key: &str, id: &str) -> bool {
    let mut r = env.redis();
    let own: Option<f64> = redis::cmd("ZSCORE")
        .arg(env.key(&format!("idx:key:{key}")))
        .arg(id)
        .query(&mut r)
        .unwrap();
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(env.key("idx:keys"))
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    own.is_some() || members.iter().any(|m| m.ends_with(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_finished_jobs_and_their_index_entries_only() {
    // One job at a time, so that jobs finish in the order they were enqueued.
    let config = CONFIG.replace("concurrency = 4", "concurrency = 1");
    let env = TestEnv::new(&config);
    let client = env.client().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            client
                .enqueue(req("f/a", "w1", json!({ "acct": i })))
                .await
                .unwrap(),
        );
    }
    let mut later = req("f/b", "w1", json!({}));
    later.delay_ms = 600_000;
    let scheduled = client.enqueue(later).await.unwrap();
    let w = env.worker(&[], &[]);
    let done = env.finish(&client, &ids).await;
    drop(w);
    // Jobs 0, 1 and 4 as older versions recorded them: in a key's own set
    // (0) or the key index (1, 4), with bare ids in the status list.
    // Retention removes those entries too, and `runs` lists what they hold.
    as_older_version(&env, &done[0], true);
    as_older_version(&env, &done[1], false);
    as_older_version(&env, &done[4], false);
    let key_of = |i: usize| format!("w1/acct/{i}");
    for (i, id) in ids.iter().enumerate() {
        let listed = of_key(&client, key_of(i), 10).await;
        assert_eq!(ids_of(&listed), vec![id.clone()], "key of job #{i}");
    }
    // An entry whose job is gone (as an older `sluice retry` leaves one)
    // at the head of the list: retention takes it out too.
    redis::cmd("LPUSH")
        .arg(env.key("idx:status:succeeded"))
        .arg("01a213e6-0000-7000-8000-000000000000 w1/acct/9")
        .query::<()>(&mut env.redis())
        .unwrap();
    let _w = env.worker(
        &[],
        &[
            ("SLUICE_RETENTION__KEEP_MAX", "3"),
            ("SLUICE_RETENTION__EVERY_S", "0.2"),
        ],
    );
    let mut r = env.redis();
    wait_until("retention to keep three finished jobs", || {
        redis::cmd("LLEN")
            .arg(env.key("idx:status:succeeded"))
            .query::<usize>(&mut r)
            .unwrap()
            == 3
    });
    // The three that finished first go.
    let kept = client
        .runs(&RunsQuery {
            status: Some(Status::Succeeded),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&kept), newest_first(ids[3..].to_vec()));
    let status_list: Vec<String> = redis::cmd("LRANGE")
        .arg(env.key("idx:status:succeeded"))
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    assert_eq!(
        status_list,
        [
            format!("{} {}", ids[3], key_of(3)),
            ids[4].to_string(),
            format!("{} {}", ids[5], key_of(5)),
        ],
        "entries as they were stored"
    );
    for (i, id) in ids.iter().enumerate() {
        let exists: bool = ["jobs", "state", "results"].iter().all(|h| {
            redis::cmd("HEXISTS")
                .arg(env.key(h))
                .arg(id)
                .query(&mut r)
                .unwrap()
        });
        let older = in_older_index(&env, &key_of(i), id);
        assert_eq!((exists, older), (i >= 3, i == 4), "job #{i}");
    }
    assert_eq!(
        client.job(&scheduled).await.unwrap().unwrap().status,
        "scheduled",
        "unfinished jobs stay"
    );
    // A key's jobs are listed from the status list's entries and from an
    // older version's index, by `runs` and on the key's page.
    for i in [4, 5] {
        let listed = of_key(&client, key_of(i), 10).await;
        assert_eq!(ids_of(&listed), vec![ids[i].clone()], "key of job #{i}");
        let detail = client.key_detail(&key_of(i)).await.unwrap();
        assert_eq!(
            ids_of(&detail.recent),
            vec![ids[i].clone()],
            "page of job #{i}"
        );
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    http_req(port, "GET", path)
}

fn http_req(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_jobs_run_and_health_answers() {
    let port = free_port();
    let env = TestEnv::new(&CONFIG.replace(
        "concurrency = 4",
        &format!("concurrency = 4\nmetrics_addr = \"127.0.0.1:{port}\""),
    ));
    let w = env.worker(&[], &[]);
    let client = env.client().await;
    let ok = env.enqueue(&client, "f/b", json!({}), 5).await;
    let bad = env.enqueue(&client, "f/fail", json!({}), 2).await;
    env.finish(&client, &[ok, bad].concat()).await;
    w.wait_for_log("serving /metrics");
    // Counters move when a job's task ends, just before its result is sent.
    wait_until("the counters to show every job", || {
        let (_, body) = http_get(port, "/metrics");
        body.contains(r#"sluice_jobs_succeeded_total{path="f/b"} 5"#)
            && body.contains(r#"sluice_jobs_failed_total{path="f/fail"} 2"#)
    });
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    for needle in [
        r#"sluice_jobs_started_total{path="f/b"} 5"#,
        r#"sluice_jobs_started_total{path="f/fail"} 2"#,
        "sluice_queue_wait_seconds_count 7",
        r#"sluice_script_seconds_count{script="admit"}"#,
    ] {
        assert!(body.contains(needle), "{needle} missing from\n{body}");
    }
    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""status":"ok""#));
    assert_eq!(http_get(port, "/nope").0, 404);
    // Only what is served, by the method it is served with.
    assert_eq!(http_req(port, "POST", "/metrics").0, 405);
    assert_eq!(http_req(port, "DELETE", "/healthz").0, 405);
    // A request whose headers never finish is dropped by the server (it
    // would otherwise hold a descriptor of the worker for ever): the read
    // ends, rather than running into this side's own 30 s timeout.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes a connection whose headers never end");
}

/// `log_format = "json"`: one JSON object a line, and a job's lines carry its
/// span with id, path, concurrency key and attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_job_span() {
    let env = TestEnv::new(CONFIG);
    let w = env.worker(&[], &[("SLUICE_LOG_FORMAT", "json")]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/fail", json!({}), 1).await;
    env.finish(&client, &ids).await;
    w.wait_for_log("\"failed\"");
    let line = w
        .log_text()
        .lines()
        .find(|l| l.contains("\"failed\""))
        .unwrap()
        .to_string();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["span"]["id"], json!(ids[0]));
    assert_eq!(v["span"]["path"], "f/fail");
    assert_eq!(v["span"]["attempt"], 1);
    assert!(v["span"].get("key").is_some(), "{line}");
    assert!(w
        .log_text()
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_runs_list_every_job_of_that_key_only() {
    // Finished jobs of a key and of a neighbour whose key the first one's
    // starts with, interleaved in the status list; some of each still
    // scheduled; one through the idempotent enqueue; and four finished ones
    // as older versions recorded them (bare ids in the status list, and an
    // index entry).
    let env = TestEnv::new(
        r#"
[worker]
concurrency = 8

[scripts."f/k"]
command = ["true"]
concurrency = { max = 1000, window_s = 0, key = "$workspace/acct/$args[acct]" }
"#,
    );
    let client = env.client().await;
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    // More finished entries than one page of a status list read for a key
    // (1,000, runs.rs).
    for _ in 0..3 {
        let reqs: Vec<JobRequest> = (0..400)
            .map(|i| {
                req(
                    "f/k",
                    "w1",
                    json!({ "acct": if i % 4 == 0 { 77 } else { 7 } }),
                )
            })
            .collect();
        let got = client.enqueue_batch(&reqs).await.unwrap();
        for (i, id) in got.into_iter().enumerate() {
            if i % 4 == 0 {
                theirs.push(id)
            } else {
                mine.push(id)
            }
        }
    }
    let w = env.worker(&[], &[]);
    let finished = env.finish(&client, &mine).await;
    env.finish(&client, &theirs).await;
    drop(w);
    for (n, job) in finished.iter().take(4).enumerate() {
        as_older_version(&env, job, n % 2 == 0);
    }
    for acct in [7, 77] {
        let mut later = req("f/k", "w1", json!({ "acct": acct }));
        later.delay_ms = 600_000;
        let id = client.enqueue(later.clone()).await.unwrap();
        if acct == 7 {
            mine.push(id)
        } else {
            theirs.push(id)
        }
        later.idempotency_key = Some(format!("once-{acct}"));
        let id = client.enqueue(later).await.unwrap();
        if acct == 7 {
            mine.push(id)
        } else {
            theirs.push(id)
        }
    }
    for (key, want) in [("w1/acct/7", &mine), ("w1/acct/77", &theirs)] {
        let listed = of_key(&client, key, 1_000).await;
        assert!(listed
            .iter()
            .all(|j| j.concurrency_key.as_deref() == Some(key)));
        let mut got = ids_of(&listed);
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want, "{key}");
    }
    // Newest created first, and only the status asked for.
    let newest = of_key(&client, "w1/acct/7", 2).await;
    assert_eq!(
        ids_of(&newest),
        newest_first(mine[mine.len() - 2..].to_vec())
    );
    let succeeded = client
        .runs(&RunsQuery {
            concurrency_key: Some("w1/acct/7".into()),
            status: Some(Status::Succeeded),
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(succeeded.len(), finished.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys_are_listed_and_retention_takes_their_index_entries() {
    // Keys the JSON of a spec escapes, or that look like the key index's
    // own syntax (a length, a range bound), are listed by their entries;
    // and retention rebuilds each job's member of an older version's key
    // index from its decoded spec, and must find the one that version wrote.
    let config = r#"
[scripts."f/k"]
command = ["true"]
concurrency = { max = 1, window_s = 0, key = "$args[t]" }
"#;
    let env = TestEnv::new(config);
    let client = env.client().await;
    let keys = [
        "a\"b\\c",
        "ü/日本",
        "[x(y;z",
        "12:ab",
        "%d+ (.*) $",
        "sp ace",
        "1",
        &"k".repeat(500),
    ];
    let mut ids = Vec::new();
    for k in keys {
        let mut r = JobRequest::new("f/k", json!({ "t": k }));
        // One of each through the ready-now path, one delayed (the other path).
        ids.push(client.enqueue(r.clone()).await.unwrap());
        r.delay_ms = 1;
        ids.push(client.enqueue(r).await.unwrap());
    }
    let w = env.worker(&[], &[]);
    let done = env.finish(&client, &ids).await;
    drop(w);
    for (i, k) in keys.iter().enumerate() {
        let listed = of_key(&client, k.to_string(), 10).await;
        let mut got = ids_of(&listed);
        got.sort();
        let mut want = ids[2 * i..2 * i + 2].to_vec();
        want.sort();
        assert_eq!(got, want, "key {k:?}");
    }
    let mut r = env.redis();
    for job in &done {
        redis::cmd("ZADD")
            .arg(env.key("idx:keys"))
            .arg(0)
            .arg(sluice_shared::key_index::member(
                job.concurrency_key.as_deref().unwrap(),
                job.created_at.unwrap(),
                &job.id,
            ))
            .query::<()>(&mut r)
            .unwrap();
    }
    let _w = env.worker(
        &[],
        &[
            ("SLUICE_RETENTION__KEEP_MAX", "1"),
            ("SLUICE_RETENTION__EVERY_S", "0.2"),
        ],
    );
    wait_until("retention to keep one finished job", || {
        redis::cmd("LLEN")
            .arg(env.key("idx:status:succeeded"))
            .query::<usize>(&mut r)
            .unwrap()
            == 1
    });
    let left: usize = redis::cmd("ZCARD")
        .arg(env.key("idx:keys"))
        .query(&mut r)
        .unwrap();
    assert_eq!(left, 1, "only the kept job's entry is left");
}

/// A key whose jobs are admitted by its running count alone is written to
/// no registry (held.lua): `limits`, the list of keys and the key's page
/// find it by its count's field, with the limit stamped on its running
/// jobs, and it is no longer in use once they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_admitted_by_its_count_is_listed_while_its_jobs_run() {
    let dir = Scratch::new("inspect");
    let flag = dir.path("go");
    let env = TestEnv::new(&format!(
        r#"
[scripts."f/hold"]
command = ["sh", "-c", "while [ ! -e '{}' ]; do sleep 0.05; done"]
concurrency = {{ max = 3, window_s = 0, key = "$args[k]" }}
"#,
        flag.display()
    ));
    let _w = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = env
        .enqueue(&client, "f/hold", json!({ "k": "k1" }), 2)
        .await;
    wait_until("both jobs to run", || {
        let rt = tokio::runtime::Handle::current();
        std::thread::scope(|s| {
            s.spawn(|| {
                rt.block_on(client.jobs(&ids))
                    .unwrap()
                    .iter()
                    .all(|j| j.as_ref().is_some_and(|j| j.status == "running"))
            })
            .join()
            .unwrap()
        })
    });
    let in_registry: bool = redis::cmd("HEXISTS")
        .arg(env.key("limits"))
        .arg("k1")
        .query(&mut env.redis())
        .unwrap();
    assert!(!in_registry, "admitted by the count alone");
    let states = client.limits(None).await.unwrap();
    assert_eq!(states.len(), 1, "{states:?}");
    let s = &states[0];
    assert_eq!(
        (s.key.as_str(), s.max, s.window_s, s.held, s.waiting),
        ("k1", 3, 0.0, 2, 0)
    );
    assert_eq!(client.limits(Some("k1")).await.unwrap().len(), 1);
    assert_eq!(client.limit_keys().await.unwrap(), ["k1"]);
    let detail = client.key_detail("k1").await.unwrap();
    let mut running: Vec<String> = detail
        .slots
        .iter()
        .filter_map(|s| match s {
            sluice_producer::Slot::Running { id } => Some(id.clone()),
            _ => None,
        })
        .collect();
    running.sort();
    let mut want: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    want.sort();
    assert_eq!(running, want);
    std::fs::write(&flag, b"").unwrap();
    env.finish(&client, &ids).await;
    assert!(client.limits(None).await.unwrap().is_empty());
    assert!(client.limit_keys().await.unwrap().is_empty());
}

/// A windowed key admitted by its count holds its slot after its job ends:
/// listed from that slot, with its stamped window; once the slot expires on
/// its own, retention removes the count's field that still marks keys of
/// its own, though the key was never in the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_clears_a_windowed_keys_count_after_its_window() {
    let env = TestEnv::new(
        r#"
[scripts."f/win"]
command = ["true"]
concurrency = { max = 3, window_s = 1, key = "$args[k]" }

[scripts."f/long"]
command = ["true"]
concurrency = { max = 4, window_s = 600, key = "$args[k]" }
"#,
    );
    let client = env.client().await;
    let mut ids = env
        .enqueue(&client, "f/win", json!({ "k": "short" }), 1)
        .await;
    ids.extend(
        env.enqueue(&client, "f/long", json!({ "k": "long" }), 1)
            .await,
    );
    let w = env.worker(&[], &[]);
    env.finish(&client, &ids).await;
    drop(w);
    let mut r = env.redis();
    let field: Option<String> = redis::cmd("HGET")
        .arg(env.key("running"))
        .arg("long")
        .query(&mut r)
        .unwrap();
    assert_eq!(field.as_deref(), Some("0 s"));
    let registry: Vec<String> = redis::cmd("HKEYS")
        .arg(env.key("limits"))
        .query(&mut r)
        .unwrap();
    assert!(
        registry.is_empty(),
        "admitted by the count alone: {registry:?}"
    );
    let states = client.limits(Some("long")).await.unwrap();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.max, s.window_s, s.held))
            .collect::<Vec<_>>(),
        [(4, 600.0, 1)],
        "{states:?}"
    );
    let _w = env.worker(&[], &[("SLUICE_RETENTION__EVERY_S", "0.2")]);
    wait_until("retention to remove the short key's field", || {
        !redis::cmd("HEXISTS")
            .arg(env.key("running"))
            .arg("short")
            .query::<bool>(&mut r)
            .unwrap()
    });
    let keys: Vec<String> = client
        .limits(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["long"], "the long window still holds its key");
}
