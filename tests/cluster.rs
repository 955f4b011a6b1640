//! Replicas and failover. On a Redis Cluster of its own (3 primaries, a
//! replica each), a primary failed over mid-run loses no job and breaks no
//! limit, judged from what the jobs' own commands logged; and with
//! `wait_replicas`, an enqueue returns only once a replica has the job.

use sluice_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failed_over_mid_run_loses_no_job_and_breaks_no_limit() {
    let scratch = Scratch::new("failover");
    let log = scratch.path("commands.log");
    let mut env = TestEnv::with_redis(
        RedisServer::cluster(3, 1),
        &format!(
            r#"
wait_replicas = 1
[worker]
concurrency = 3
lease_s = 3
[scripts."f/limited"]
command = {}
concurrency = {{ max = 2, window_s = 0, key = "one" }}
"#,
            logging_command(&log, 0.3)
        ),
    );
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/limited", json!({}), 30).await;
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();

    let ends = || {
        read_command_log(&log)
            .iter()
            .filter(|l| l.kind == "END")
            .count()
    };
    wait_until("a few jobs ended", || ends() >= 6);
    // Kill the namespace's primary outright: its replica takes over once the
    // cluster notices (cluster-node-timeout 2 s).
    let primary = env.redis.node_for(&env.key("jobs"));
    let node = env
        .redis
        .nodes
        .iter()
        .position(|n| n.url == primary)
        .unwrap();
    let mut child = env.redis.nodes[node].child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("a replica took over the namespace", || {
        env.redis.node_for(&env.key("jobs")) != primary
    });

    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let lines = read_command_log(&log);
    for id in &ids {
        assert!(
            lines.iter().any(|l| l.kind == "END" && l.id == id.as_str()),
            "job {id} never ran to its end"
        );
    }
    let most = most_alive_at_once(&lines, |_| true);
    assert!(most <= 2, "{most} attempts alive at once on a key of max 2");
    assert_attempts_never_overlap(&lines);
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
