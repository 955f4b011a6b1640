//! A namespace split into partitions: keyed jobs live in their key's
//! partition, so every limit stays exact; plain jobs are dealt out over all
//! of them; a job id tells its partition; inspection sees the whole
//! namespace; the count is recorded and a config that disagrees is refused.
//! The limit and crash tests run on a Redis Cluster of 3 primaries, judged
//! from what the jobs' own commands logged.

use std::collections::{BTreeMap, BTreeSet};

use sluice_producer::{JobId, JobRequest, RunsQuery};
use sluice_shared::handoff;
use sluice_shared::partitions::Partitions;
use sluice_tests::*;

fn config(log: &std::path::Path, secs: f64) -> String {
    let cmd = logging_command(log, secs);
    format!(
        r#"
partitions = 3
[worker]
concurrency = 6
lease_s = 2

[scripts."f/keyed"]
command = {cmd}
concurrency = {{ max = 1, window_s = 0, key = "acct/$args[k]" }}

[scripts."f/plain"]
command = {cmd}
"#
    )
}

/// The partition tags, by reading one key name of each partition.
fn tags(parts: &Partitions) -> Vec<String> {
    parts
        .all()
        .iter()
        .map(|k| {
            let j = k.jobs();
            j[..j.find('}').unwrap() + 1].to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_limits_hold_and_plain_jobs_spread_across_partitions_on_a_cluster() {
    let scratch = Scratch::new("partitions");
    let log = scratch.path("commands.log");
    let env = TestEnv::with_redis(RedisServer::cluster(3, 0), &config(&log, 0.1));
    let client = env.client().await;
    let mut reqs = Vec::new();
    for round in 0..5 {
        for k in 0..6 {
            reqs.push(JobRequest::new(
                "f/keyed",
                json!({ "k": k, "round": round }),
            ));
        }
        for _ in 0..6 {
            reqs.push(JobRequest::new("f/plain", json!({})));
        }
    }
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");

    let parts = client.partitions();
    // Each partition is on a primary of its own.
    let nodes: BTreeSet<String> = tags(parts)
        .iter()
        .map(|t| env.redis.node_for(&format!("{t}:jobs")))
        .collect();
    assert_eq!(
        nodes.len(),
        3,
        "partitions {:?} share primaries",
        tags(parts)
    );

    let lines = read_command_log(&log);
    let mut per_part: BTreeMap<usize, usize> = BTreeMap::new();
    for (req, (id, job)) in reqs.iter().zip(ids.iter().zip(&jobs)) {
        if req.path == "f/plain" {
            *per_part.entry(parts.of_id(id)).or_default() += 1;
        } else {
            // A keyed job's id tells its key's partition.
            let key = job.concurrency_key.clone().unwrap();
            assert_eq!(parts.of_id(id), parts.of_key(&key), "{id} of {key}");
        }
    }
    // Plain jobs are dealt out evenly.
    assert_eq!(
        per_part.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10]
    );
    // Every key ran one at a time, in enqueue order, judged from the logs.
    for k in 0..6 {
        let of_key: Vec<&JobId> = reqs
            .iter()
            .zip(&ids)
            .filter(|(r, _)| r.path == "f/keyed" && r.args["k"] == k)
            .map(|(_, id)| id)
            .collect();
        let most = most_alive_at_once(&lines, |l| of_key.iter().any(|id| id.as_str() == l.id));
        assert_eq!(most, 1, "key {k}: {most} at once");
        let starts: Vec<&str> = lines
            .iter()
            .filter(|l| l.kind == "START" && of_key.iter().any(|id| id.as_str() == l.id))
            .map(|l| l.id.as_str())
            .collect();
        let expected: Vec<&str> = of_key.iter().map(|id| id.as_str()).collect();
        assert_eq!(starts, expected, "key {k} started out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_in_any_partition_on_a_cluster() {
    let scratch = Scratch::new("partitions-crash");
    let log = scratch.path("commands.log");
    let env = TestEnv::with_redis(RedisServer::cluster(3, 0), &config(&log, 1.0));
    let client = env.client().await;
    let reqs: Vec<JobRequest> = (0..12)
        .map(|i| match i % 2 {
            0 => JobRequest::new("f/keyed", json!({ "k": i % 4 })),
            _ => JobRequest::new("f/plain", json!({})),
        })
        .collect();
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    let doomed = env.worker(&[], &[]);
    wait_until("the first worker runs jobs", || {
        read_command_log(&log)
            .iter()
            .filter(|l| l.kind == "START")
            .count()
            >= 4
    });
    doomed.signal("KILL");
    let _survivor = env.worker(&[], &[]);
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let lines = read_command_log(&log);
    assert_attempts_never_overlap(&lines);
    for id in &ids {
        assert!(
            lines.iter().any(|l| l.kind == "END" && l.id == id.as_str()),
            "{id} never ended"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_sees_every_partition_and_ids_find_theirs() {
    let env = TestEnv::new(
        r#"
partitions = 4
[scripts."f/keyed"]
command = ["true"]
concurrency = { max = 1, key = "acct/$args[k]" }
[scripts."f/plain"]
command = ["true"]
"#,
    );
    let client = env.client().await;
    let later = std::time::Duration::from_secs(3600);
    let mut reqs: Vec<JobRequest> = (0..8)
        .map(|_| JobRequest::new("f/plain", json!({})).delay(later))
        .collect();
    for k in ["a", "b", "c"] {
        reqs.push(JobRequest::new("f/keyed", json!({ "k": k })).delay(later));
    }
    let ids = client.enqueue_batch(&reqs).await.unwrap();
    let parts = client.partitions();
    let used: BTreeSet<usize> = ids.iter().map(|id| parts.of_id(id)).collect();
    assert_eq!(used.len(), 4, "ids in partitions {used:?}");

    // Runs, limits and the overview see all of them.
    let runs = client
        .runs(&RunsQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: BTreeSet<&str> = runs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(listed, ids.iter().map(|i| i.as_str()).collect());
    // A key is in use from its first admission, or once it is paused:
    // each is listed from its own partition's running counts.
    for k in ["acct/a", "acct/b", "acct/c"] {
        client.pause(k, later).await.unwrap();
    }
    let keys: Vec<String> = client
        .limits(None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(keys, ["acct/a", "acct/b", "acct/c"]);
    for k in ["acct/a", "acct/b", "acct/c"] {
        let of_key = client
            .runs(&RunsQuery {
                concurrency_key: Some(k.into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(of_key.len(), 1, "{k}");
    }
    assert_eq!(client.overview().await.unwrap().running_or_scheduled, 11);

    // Status and cancel by id, from the command line, in a partition other
    // than the first.
    let far = ids.iter().find(|id| parts.of_id(id) == 3).unwrap();
    let out = env.sluice(&["cancel", far], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.sluice(&["status", far, "--json"], None);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["status"], "cancelled", "{status}");
    let outcome = client
        .wait(&ids[..1], Some(std::time::Duration::from_millis(1)))
        .await
        .unwrap();
    assert!(outcome.missing.is_empty(), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_keeps_its_partition_count() {
    let env = TestEnv::new("partitions = 3\n[scripts.\"f/plain\"]\ncommand = [\"true\"]\n");
    // The first enqueue records the count.
    let first = env.client().await;
    first
        .enqueue(JobRequest::new("f/plain", json!({})))
        .await
        .unwrap();
    // The same namespace asked for with another count is refused, by the
    // library and by a worker, naming both counts.
    let mut other = env.config();
    other.partitions = 2;
    let e = sluice_producer::Client::connect(other)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("partitions") && e.contains("says 2") && e.contains("created with 3"),
        "{e}"
    );
    let worker = env.worker(&[], &[("SLUICE_PARTITIONS", "2")]);
    worker.wait_for_log("created with 3");

    // A namespace that held jobs before the count was recorded has one.
    let old = TestEnv::new("[scripts.\"f/plain\"]\ncommand = [\"true\"]\n");
    let c = old.client().await;
    c.enqueue(JobRequest::new("f/plain", json!({})))
        .await
        .unwrap();
    let mut r = old.redis();
    let _: () = redis::cmd("DEL")
        .arg(old.key("partitions"))
        .query(&mut r)
        .unwrap();
    let mut more = old.config();
    more.partitions = 3;
    let e = sluice_producer::Client::connect(more)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("created with 1"), "{e}");
}

/// A worker of many partitions on one server keeps a connection per loop
/// and per ack task: its leases must still be renewed (jobs longer than
/// the lease finish in their first attempt), and it must still stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_many_partitions_still_renews_its_leases_and_stops() {
    let env = TestEnv::new(
        r#"
partitions = 6
[worker]
concurrency = 6
lease_s = 1
[scripts."f/long"]
command = ["sh", "-c", "sleep 2.5"]
"#,
    );
    let client = env.client().await;
    let worker = env.worker(&[], &[]);
    let ids = env.enqueue(&client, "f/long", json!({}), 6).await;
    let jobs = env.finish(&client, &ids).await;
    for j in &jobs {
        assert_eq!((j.status.as_str(), j.attempt), ("succeeded", 1), "{j:#?}");
    }
    worker.signal("TERM");
    worker.wait_for_log("worker stopped");
}

/// A flow whose steps have keys of their own: each step lives in its key's
/// partition, away from its run, and crosses through the hand-off both
/// ways (its start to its partition, its end back to the run). Every key
/// keeps its limit, the results reach the run, nothing is left in any
/// hand-off hash, and a worker killed mid-run loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flows_steps_cross_partitions_and_back_on_a_cluster() {
    let scratch = Scratch::new("partitions-flow");
    let log = scratch.path("commands.log");
    let cmd = logging_command(&log, 0.2);
    let env = TestEnv::with_redis(
        RedisServer::cluster(3, 0),
        &format!(
            r#"
partitions = 3
[worker]
concurrency = 6
lease_s = 2
[scripts."f/acct"]
command = {cmd}
concurrency = {{ max = 1, window_s = 0, key = "acct/$args[a]" }}
[flows."f/sync"]
[[flows."f/sync".steps]]
id = "each"
for_each = "$flow_input.accounts"
parallelism = 4
script = "f/acct"
args = {{ a = "$item" }}
"#
        ),
    );
    let client = env.client().await;
    let accounts: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    let reqs: Vec<JobRequest> = (0..4)
        .map(|_| JobRequest::new("f/sync", json!({ "accounts": accounts })))
        .collect();
    let runs = client.enqueue_batch(&reqs).await.unwrap();
    let doomed = env.worker(&[], &[]);
    wait_until("steps run", || {
        read_command_log(&log)
            .iter()
            .filter(|l| l.kind == "END")
            .count()
            >= 3
    });
    doomed.signal("KILL");
    let _survivor = env.worker(&[], &[]);
    let done = env.finish(&client, &runs).await;
    assert!(done.iter().all(|j| j.status == "succeeded"), "{done:#?}");

    let parts = client.partitions();
    let mut away = 0;
    for a in &accounts {
        let key = format!("acct/{a}");
        let steps = client
            .runs(&RunsQuery {
                concurrency_key: Some(key.clone()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(steps.len(), 4, "{key}: {steps:#?}");
        for s in &steps {
            assert_eq!(parts.of_id(&s.id), parts.of_key(&key), "{key}");
            let run = s.parent.clone().unwrap();
            away += usize::from(parts.of_id(&run) != parts.of_id(&s.id));
        }
        // One at a time per key, from the commands' own logs.
        let lines = read_command_log(&log);
        let most = most_alive_at_once(&lines, |l| steps.iter().any(|s| s.id.as_str() == l.id));
        assert_eq!(most, 1, "{key}: {most} at once");
    }
    assert!(
        away > 0,
        "no step lived away from its run: the test proves nothing"
    );
    assert_attempts_never_overlap(&read_command_log(&log));
    for k in parts.all() {
        let mut r = redis::Client::open(env.redis.node_for(&k.handoff()).as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let left: i64 = redis::cmd("HLEN").arg(k.handoff()).query(&mut r).unwrap();
        assert_eq!(left, 0, "{} still holds work", k.handoff());
    }
}

/// A flow whose one step has a key of its own, in a namespace of 3
/// partitions: its step can live away from its run.
const CROSSING: &str = r#"
partitions = 3
[scripts."f/acct"]
command = ["true"]
concurrency = { max = 1, key = "acct/$args[a]" }
[flows."f/sync"]
[[flows."f/sync".steps]]
id = "one"
script = "f/acct"
args = { a = "x" }
"#;

/// The step job of run `run` of CROSSING's flow, with an id of partition
/// `part` (its key's).
fn crossing_step(env: &TestEnv, run: &str, part: usize) -> sluice_shared::job::NewJob {
    let mut job = sluice_shared::job::NewJob::step(
        &env.config(),
        sluice_shared::job::StepOf {
            flow_id: run.to_string(),
            flow_path: "f/sync".into(),
            step: "one".into(),
            iter: None,
        },
        "default",
        json!({ "a": "x" }),
    )
    .unwrap();
    job.id = sluice_producer::JobId::in_partition(part);
    job
}

/// CROSSING's namespace, its client, a pool of its own, the partition of
/// the step's key and one other for its runs.
async fn crossing() -> (
    TestEnv,
    sluice_producer::Client,
    sluice_shared::redis_conn::Pool,
    usize,
    usize,
) {
    let env = TestEnv::new(CROSSING);
    let client = env.client().await;
    let target = sluice_shared::redis_conn::Target::Single(env.redis.url.clone());
    let pool = sluice_shared::redis_conn::pool(&target, 1).unwrap();
    let key_part = client.partitions().of_key("acct/x");
    (env, client, pool, key_part, (key_part + 1) % 3)
}

/// A step waiting in a hand-off hash is started only while its run still
/// waits for it: a carrier that comes after the run was cancelled or
/// purged, or after the step's end was recorded (a stale sweep), drops it
/// instead of running it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_is_carried_to_its_partition_only_while_its_run_waits_for_it() {
    let (env, client, pool, key_part, run_part) = crossing().await;
    let parts = client.partitions();
    let mut con = pool.get().await.unwrap();
    let mut r = env.redis();
    let from = &parts.all()[run_part];
    let step = |run: &str| crossing_step(&env, run, key_part);
    let stored = |r: &mut redis::Connection, id: &str| -> bool {
        redis::cmd("HEXISTS")
            .arg(parts.all()[key_part].jobs())
            .arg(id)
            .query(r)
            .unwrap()
    };
    for waits in [false, true] {
        let run = sluice_producer::JobId::in_partition(run_part).to_string();
        let job = step(&run);
        if waits {
            // The run is parked and waits for this step.
            let _: () = redis::cmd("HSET")
                .arg(from.state())
                .arg(&run)
                .arg("running 1 1 drive=parked")
                .query(&mut r)
                .unwrap();
            let _: () = redis::cmd("HSET")
                .arg(from.flow_state(&run))
                .arg(format!("c:{}", job.id))
                .arg("1")
                .query(&mut r)
                .unwrap();
        }
        let field = format!("start:{}", job.id);
        let _: () = redis::cmd("HSET")
            .arg(from.handoff())
            .arg(&field)
            .arg(serde_json::to_string(&job.values()).unwrap())
            .query(&mut r)
            .unwrap();
        let carried = sluice_shared::handoff::carry(&mut *con, parts, from, &[field], 0)
            .await
            .unwrap();
        assert_eq!(carried, 1);
        assert_eq!(stored(&mut r, &job.id), waits, "run waits: {waits}");
        let left: i64 = redis::cmd("HLEN")
            .arg(from.handoff())
            .query(&mut r)
            .unwrap();
        assert_eq!(left, 0);
    }
}

/// With `wait_replicas`, a hand-off entry goes only once the replicas have
/// what carrying it wrote: on a server with no replica every WAIT comes
/// back short, so the step is started (and its end recorded) but the entry
/// stays for a later sweep, which carries it again without doing the work
/// twice. Without the check the entry went at once, and a failover to a
/// replica lacking the carried write would lose the step's start or end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_entry_stays_until_its_replicas_confirm_the_carry() {
    let (env, client, pool, key_part, run_part) = crossing().await;
    let parts = client.partitions();
    let mut con = pool.get().await.unwrap();
    let mut r = env.redis();
    let (run_keys, step_keys) = (&parts.all()[run_part], &parts.all()[key_part]);
    let run = sluice_producer::JobId::in_partition(run_part).to_string();
    let job = crossing_step(&env, &run, key_part);
    let id = job.id.to_string();
    // The run is parked and waits for its step.
    let _: () = redis::pipe()
        .hset(run_keys.state(), &run, "running 1 1 drive=parked")
        .hset(run_keys.flow_state(&run), format!("c:{id}"), "1")
        .query(&mut r)
        .unwrap();
    let hlen = |r: &mut redis::Connection, keys: &sluice_shared::Keys| -> i64 {
        redis::cmd("HLEN").arg(keys.handoff()).query(r).unwrap()
    };
    let repeated = |r: &mut redis::Connection, keys: &sluice_shared::Keys| -> i64 {
        redis::cmd("HGET")
            .arg(keys.stats())
            .arg("repeated")
            .query::<Option<i64>>(r)
            .unwrap()
            .unwrap_or(0)
    };

    // The start: written to the run's partition, carried to the step's.
    let start = format!("start:{id}");
    let _: () = redis::cmd("HSET")
        .arg(run_keys.handoff())
        .arg(&start)
        .arg(serde_json::to_string(&job.values()).unwrap())
        .query(&mut r)
        .unwrap();
    for round in 1..=2 {
        let carried = handoff::carry(&mut *con, parts, run_keys, std::slice::from_ref(&start), 1)
            .await
            .unwrap();
        assert_eq!(carried, 0, "round {round}: unconfirmed, so not removed");
        assert_eq!(hlen(&mut r, run_keys), 1, "round {round}");
        let ready: i64 = redis::cmd("LLEN")
            .arg(step_keys.ready("default"))
            .query(&mut r)
            .unwrap();
        assert_eq!(ready, 1, "round {round}: the step is enqueued once");
    }
    // The second carry found the step there, and wrote that it did.
    assert_eq!(repeated(&mut r, step_keys), 1);

    // The step ran and ended, its end waits in its partition's hand-off,
    // and retention removed the step: carried again, the start must not
    // enqueue it a second time, and goes.
    let end = format!("end:{id}");
    let value = json!({ "p": run, "s": "one", "st": "succeeded", "pl": "null" }).to_string();
    let _: () = redis::pipe()
        .hset(step_keys.handoff(), &end, &value)
        .del(step_keys.ready("default"))
        .hdel(step_keys.jobs(), &id)
        .hdel(step_keys.state(), &id)
        .query(&mut r)
        .unwrap();
    let carried = handoff::carry(&mut *con, parts, run_keys, &[start], 1)
        .await
        .unwrap();
    assert_eq!(carried, 1);
    assert_eq!(hlen(&mut r, run_keys), 0);
    let ready: i64 = redis::cmd("LLEN")
        .arg(step_keys.ready("default"))
        .query(&mut r)
        .unwrap();
    assert_eq!(ready, 0, "an ended step is not enqueued again");

    // The end: carried to the run's partition.
    for round in 1..=2 {
        let carried = handoff::carry(&mut *con, parts, step_keys, std::slice::from_ref(&end), 1)
            .await
            .unwrap();
        assert_eq!(carried, 0, "round {round}");
        assert_eq!(hlen(&mut r, step_keys), 1, "round {round}");
        let waits: bool = redis::cmd("HEXISTS")
            .arg(run_keys.flow_state(&run))
            .arg(format!("c:{id}"))
            .query(&mut r)
            .unwrap();
        assert!(!waits, "round {round}: the end is recorded");
    }
    assert_eq!(repeated(&mut r, run_keys), 1);
    let carried = handoff::carry(&mut *con, parts, step_keys, &[end], 0)
        .await
        .unwrap();
    assert_eq!(carried, 1);
    assert_eq!(hlen(&mut r, step_keys), 0);
}
