//! Replicas, failover and resharding. On a Redis Cluster of its own, a
//! primary failed over mid-run, or the namespace's slot moved to another
//! primary mid-run, loses no job and breaks no limit, judged from what the
//! jobs' own commands logged; with `wait_replicas`, an enqueue returns only
//! once a replica has the job; calls a cluster client sends twice do their
//! work once.

use sluice_tests::*;

/// A run of 30 jobs on a key of max 2, through 2 workers, on `redis`:
/// the test env, its client, the job ids, and the commands' log.
struct LimitedRun {
    env: TestEnv,
    client: sluice_producer::Client,
    ids: Vec<sluice_producer::JobId>,
    log: std::path::PathBuf,
    _workers: Vec<WorkerProcess>,
    _scratch: Scratch,
}

impl LimitedRun {
    async fn start(redis: RedisServer, extra: &str, secs: f64) -> LimitedRun {
        let scratch = Scratch::new("cluster-run");
        let log = scratch.path("commands.log");
        let env = TestEnv::with_redis(
            redis,
            &format!(
                r#"
{extra}
[worker]
concurrency = 3
lease_s = 3
[scripts."f/limited"]
command = {}
concurrency = {{ max = 2, window_s = 0, key = "one" }}
"#,
                logging_command(&log, secs)
            ),
        );
        let client = env.client().await;
        let ids = env.enqueue(&client, "f/limited", json!({}), 30).await;
        let workers = (0..2).map(|_| env.worker(&[], &[])).collect();
        LimitedRun {
            env,
            client,
            ids,
            log,
            _workers: workers,
            _scratch: scratch,
        }
    }

    /// Jobs whose command logged its end so far.
    fn ends(&self) -> usize {
        read_command_log(&self.log)
            .iter()
            .filter(|l| l.kind == "END")
            .count()
    }

    /// Every job succeeded and ran to its end, never more than 2 alive at
    /// once and no two attempts of a job overlapping, from the logs.
    async fn assert_whole_and_within_limit(&self) {
        let jobs = self.env.finish(&self.client, &self.ids).await;
        assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
        let lines = read_command_log(&self.log);
        for id in &self.ids {
            assert!(
                lines.iter().any(|l| l.kind == "END" && l.id == id.as_str()),
                "job {id} never ran to its end"
            );
        }
        let most = most_alive_at_once(&lines, |_| true);
        assert!(most <= 2, "{most} attempts alive at once on a key of max 2");
        assert_attempts_never_overlap(&lines);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failed_over_mid_run_loses_no_job_and_breaks_no_limit() {
    let mut run = LimitedRun::start(RedisServer::cluster(3, 1), "wait_replicas = 1", 0.3).await;
    wait_until("a few jobs ended", || run.ends() >= 6);
    // Kill the namespace's primary outright: its replica takes over once the
    // cluster notices (cluster-node-timeout 2 s).
    let key = run.env.key("jobs");
    let redis = &mut run.env.redis;
    let primary = redis.node_for(&key);
    let node = redis.nodes.iter().position(|n| n.url == primary).unwrap();
    let mut child = redis.nodes[node].child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("a replica took over the namespace", || {
        run.env.redis.node_for(&key) != primary
    });
    run.assert_whole_and_within_limit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_an_enqueue_returns_only_once_a_replica_has_the_job() {
    // Its own directory: the primary writes a snapshot for the replica's sync.
    let scratch = Scratch::new("replica");
    let dir = scratch.0.to_str().unwrap();
    let port = free_port();
    let primary = RedisServer::spawn(
        &["--port", &port.to_string(), "--dir", dir],
        format!("redis://127.0.0.1:{port}"),
    );
    // The replica follows the primary through a proxy the test can hold.
    let link = Proxy::start(&primary.url);
    let link_port = link.url.rsplit(':').next().unwrap().to_string();
    let rport = free_port();
    let replica_url = format!("redis://127.0.0.1:{rport}");
    let _replica = RedisServer::spawn(
        &[
            "--port",
            &rport.to_string(),
            "--replicaof",
            "127.0.0.1",
            &link_port,
        ],
        replica_url.clone(),
    );
    let mut replica = redis::Client::open(replica_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    wait_until("the replica is in sync", || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica)
            .unwrap();
        info.contains("master_link_status:up")
    });
    let env = TestEnv::with_redis(
        primary,
        "wait_replicas = 1\n[scripts.\"f/a\"]\ncommand = [\"true\"]\n",
    );
    let client = env.client().await;
    let jobs_key = env.key("jobs");

    link.hang();
    let enqueue = {
        let jobs_key = jobs_key.clone();
        let replica_url = replica_url.clone();
        tokio::spawn(async move {
            let id = client
                .enqueue(sluice_producer::JobRequest::new("f/a", json!({})))
                .await
                .unwrap();
            // Read the replica the moment the enqueue returns.
            let mut r = redis::Client::open(replica_url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let there: bool = redis::cmd("HEXISTS")
                .arg(&jobs_key)
                .arg(id.as_str())
                .query(&mut r)
                .unwrap();
            there
        })
    };
    let mut con = env.redis();
    wait_until("the primary has the job", || {
        redis::cmd("HLEN")
            .arg(&jobs_key)
            .query::<i64>(&mut con)
            .unwrap()
            == 1
    });
    link.resume();
    assert!(
        enqueue.await.unwrap(),
        "the enqueue returned before the replica had the job"
    );
}

/// A cluster client sends a call again when its connection drops while the
/// call is out, and the call may have run: enqueue.lua, enqueue_once.lua and
/// admit.lua must then do their work once (a second enqueue would queue a
/// job twice, a second admit would leave its first jobs under a lease nobody
/// renews) and answer as the first run did, writing only that they were
/// repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sent_twice_do_their_work_once() {
    use sluice_shared::scripts::scripts;
    let env = TestEnv::new("[scripts.\"f/a\"]\ncommand = [\"true\"]\n");
    let keys = sluice_shared::Keys::new(&env.prefix);
    let target = sluice_shared::redis_conn::Target::Single(env.redis.url.clone());
    let pool = sluice_shared::redis_conn::pool(&target, 1).unwrap();
    let mut con = pool.get().await.unwrap();
    sluice_shared::tags::ensure(&keys, &mut *con, &["default"])
        .await
        .unwrap();
    let job = sluice_shared::job::NewJob::build(
        &env.config(),
        &sluice_producer::JobRequest::new("f/a", json!({})),
    )
    .unwrap();
    let mut enqueue = scripts().enqueue.call_in(&keys);
    enqueue.arg("full");
    job.push(&mut enqueue);
    for _ in 0..2 {
        let n: i64 = enqueue.query(&mut *con).await.unwrap();
        assert_eq!(n, 1);
    }
    let mut r = env.redis();
    // Entries ready, and jobs the namespace counts as unfinished.
    let queued = |r: &mut redis::Connection| -> (i64, i64) {
        let ready: i64 = redis::cmd("LLEN")
            .arg(env.key("ready:default"))
            .query(r)
            .unwrap();
        let active: i64 = redis::cmd("HGET")
            .arg(env.key("stats"))
            .arg("active")
            .query(r)
            .unwrap();
        (ready, active)
    };
    // Each repeat writes that it was one, so that a WAIT after it covers
    // the first run's writes (WAIT waits for its own client's last write).
    let repeated = |r: &mut redis::Connection| -> i64 {
        redis::cmd("HGET")
            .arg(env.key("stats"))
            .arg("repeated")
            .query::<Option<i64>>(r)
            .unwrap()
            .unwrap_or(0)
    };
    assert_eq!(queued(&mut r), (1, 1), "the job was queued twice");
    assert_eq!(repeated(&mut r), 1);

    // A chunk with an idempotency key and a job without one.
    let with_key = sluice_shared::job::NewJob::build(
        &env.config(),
        &sluice_producer::JobRequest::new("f/a", json!({})).idempotency_key("once"),
    )
    .unwrap();
    let plain = sluice_shared::job::NewJob::build(
        &env.config(),
        &sluice_producer::JobRequest::new("f/a", json!({})),
    )
    .unwrap();
    let mut once = scripts().enqueue_once.call_in(&keys);
    once.arg(60_000);
    for j in [&with_key, &plain] {
        j.push(&mut once);
        let k = j.idempotency_key.clone().unwrap_or_default();
        once.key(keys.idempotency(&k)).arg(k);
    }
    let expected = vec![with_key.id.to_string(), plain.id.to_string()];
    for _ in 0..2 {
        let got: Vec<String> = once.query(&mut *con).await.unwrap();
        assert_eq!(got, expected);
    }
    assert_eq!(
        queued(&mut r),
        (3, 3),
        "a job of the idempotent chunk was queued twice"
    );
    assert_eq!(repeated(&mut r), 2);

    let mut admit = scripts().admit.call_in(&keys);
    admit.key(keys.lease("w:0"));
    // Lease ms, room, tags, then an empty section (acks.lua).
    admit
        .arg(60_000)
        .arg(10)
        .arg("default")
        .arg(0)
        .arg(0)
        .arg(0)
        .arg(0);
    // The second run hands out again what the first admitted: the worker
    // never saw the first reply, and starts them now.
    let handed = |reply: Vec<redis::Value>| -> Vec<String> {
        redis::from_redis_value::<Vec<String>>(reply[0].clone()).unwrap()
    };
    let first = handed(admit.query(&mut *con).await.unwrap());
    let again = handed(admit.query(&mut *con).await.unwrap());
    assert_eq!(first.len(), 9, "three jobs, three values each: {first:?}");
    assert_eq!(first, again);
    assert_eq!(repeated(&mut r), 3);
    let state: String = redis::cmd("HGET")
        .arg(env.key("state"))
        .arg(job.id.as_str())
        .query(&mut r)
        .unwrap();
    assert!(state.starts_with("running 1 "), "{state}");
}

/// Moves hash slot `slot` from the primary at `from` to the one at `to`,
/// key by key, as `redis-cli --cluster reshard` would: while it runs, calls
/// meet ASK and TRYAGAIN; after it, MOVED.
fn migrate_slot(redis: &RedisServer, slot: i64, from: &str, to: &str) {
    let con = |url: &str| redis::Client::open(url).unwrap().get_connection().unwrap();
    let (mut src, mut dst) = (con(from), con(to));
    let id = |c: &mut redis::Connection| -> String {
        redis::cmd("CLUSTER").arg("MYID").query(c).unwrap()
    };
    let (src_id, dst_id) = (id(&mut src), id(&mut dst));
    let setslot = |c: &mut redis::Connection, how: &str, node: &str| {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(how)
            .arg(node)
            .query(c)
            .unwrap();
    };
    setslot(&mut dst, "IMPORTING", &src_id);
    setslot(&mut src, "MIGRATING", &dst_id);
    let port = to.rsplit(':').next().unwrap();
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(10)
            .query(&mut src)
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query(&mut src)
            .unwrap();
        // Slowly, so that calls meet the slot half moved.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for n in &redis.nodes {
        if let Some(mut c) = redis::Client::open(n.url.as_str())
            .ok()
            .and_then(|c| c.get_connection().ok())
        {
            let _: redis::RedisResult<()> = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&dst_id)
                .query(&mut c);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_moved_to_another_primary_mid_run_loses_no_job_and_breaks_no_limit() {
    let run = LimitedRun::start(RedisServer::cluster(3, 0), "", 0.2).await;
    wait_until("a few jobs ended", || run.ends() >= 5);
    let (env, key) = (&run.env, run.env.key("jobs"));
    let from = env.redis.node_for(&key);
    let to = env
        .redis
        .nodes
        .iter()
        .map(|n| n.url.clone())
        .find(|u| *u != from)
        .unwrap();
    let mut any = redis::Client::open(from.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&key)
        .query(&mut any)
        .unwrap();
    migrate_slot(&env.redis, slot, &from, &to);
    assert_eq!(env.redis.node_for(&key), to);
    assert!(
        run.ends() < 30,
        "the run ended before the move: it tests nothing"
    );
    run.assert_whole_and_within_limit().await;
}
