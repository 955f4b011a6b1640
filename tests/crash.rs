//! Nothing lost: workers killed, frozen or stopped mid-job.

use sluice_tests::*;

const CONFIG: &str = r#"
[worker]
concurrency = 4
lease_s = 1
grace_s = 30

[scripts."f/work"]
command = ["sh", "-c", "sleep 1; echo $SLUICE_ATTEMPT"]
concurrency = { max = 2, window_s = 0 }

[scripts."f/slow"]
command = ["sh", "-c", "sleep 4; echo $SLUICE_ATTEMPT"]
concurrency = { max = 2, window_s = 0 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_loses_nothing() {
    let env = TestEnv::new(CONFIG);
    let victim = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/work", json!({}), 4).await;
    wait_running(&client, &ids, 2).await;
    victim.signal("KILL");

    let _rescuer = env.worker(&[], &[]);
    let jobs = env.finish(&client, &ids).await;
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:#?}");
    let rerun: Vec<_> = jobs.iter().filter(|j| j.attempt == 2).collect();
    assert_eq!(
        rerun.len(),
        2,
        "the two killed executions ran again: {jobs:#?}"
    );
    for j in rerun {
        assert_eq!(j.result, Some(json!(2)));
    }
    // The key's slots were all given back: nothing holds it now.
    let mut r = env.redis();
    let held: usize = redis::cmd("ZCARD")
        .arg(env.key("slots:default/script/f/work"))
        .query(&mut r)
        .unwrap();
    assert_eq!(held, 0);
    // Nor is any execution of it counted as running.
    let running: Option<String> = redis::cmd("HGET")
        .arg(env.key("running"))
        .arg("default/script/f/work")
        .query(&mut r)
        .unwrap();
    assert_eq!(running, None);
    // The dead worker's lease went with the recovery, the rescuer's once its
    // jobs were all recorded.
    wait_until("every lease to be gone", || {
        redis::cmd("ZCARD")
            .arg(env.key("leases"))
            .query::<usize>(&mut r)
            .unwrap()
            == 0
    });
}

/// A worker frozen past its lease (SIGSTOP) loses the attempt; when it thaws,
/// its late result is refused and the re-run's result stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced_off() {
    let env = TestEnv::new(CONFIG);
    let frozen = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/work", json!({}), 1).await;
    wait_running(&client, &ids, 1).await;
    frozen.signal("STOP");

    let _other = env.worker(&[], &[]);
    let job = env.finish(&client, &ids).await.remove(0);
    assert_eq!((job.status.as_str(), job.attempt), ("succeeded", 2));
    frozen.signal("CONT");
    // Its script's supervisor (not frozen) killed it at the fencing
    // deadline, or it finished: the thawed worker either reports it and is
    // refused, or drops it as lost. Either way the record does not change.
    wait_until("the thawed worker to give up the attempt", || {
        let log = frozen.log_text();
        log.contains("late result refused") || log.contains("lease lost")
    });
    let after = client.job(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (after.status.as_str(), after.attempt, after.result),
        ("succeeded", 2, Some(json!(2)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_jobs_then_exits() {
    let env = TestEnv::new(CONFIG);
    let mut worker = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/work", json!({}), 4).await;
    wait_running(&client, &ids, 2).await;
    worker.signal("TERM");
    let status = worker.child.wait().unwrap();
    assert!(
        status.success(),
        "worker exit: {status:?}\n{}",
        worker.log_text()
    );
    let jobs = client.jobs(&ids).await.unwrap();
    let states: Vec<_> = jobs.iter().flatten().map(|j| j.status.as_str()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "succeeded").count(),
        2,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "waiting").count(),
        2,
        "the rest wait for their key: {states:?}"
    );
    // Another worker picks them up where they wait.
    let _next = env.worker(&[], &[]);
    let jobs = env.finish(&client, &ids).await;
    assert!(
        jobs.iter()
            .all(|j| j.status == "succeeded" && j.attempt == 1),
        "{jobs:#?}"
    );
}

/// Redis restarted with persistence on, while jobs run and wait: nothing is
/// lost, and the workers reconnect by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing_and_workers_reconnect() {
    let aof = Aof::new();
    let args = aof.args();
    let env = TestEnv::with_redis(
        RedisServer::spawn(&args, aof.url.clone()),
        CONFIG.replace("lease_s = 1", "lease_s = 30").as_str(),
    );
    let _workers: Vec<_> = (0..2).map(|_| env.worker(&[], &[])).collect();
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/work", json!({}), 6).await;
    wait_running(&client, &ids, 2).await;

    let mut env = env;
    env.redis.stop();
    env.redis = RedisServer::spawn(&args, aof.url.clone());
    let client = env.client().await;
    let jobs = env.finish(&client, &ids).await;
    assert!(
        jobs.iter().all(|j| j.status == "succeeded"),
        "{jobs:#?}\n{}",
        env.logs()
    );
    assert!(max_slots_held(&jobs) <= 2);
    let logs = env.logs();
    assert!(
        logs.contains("retrying") || logs.contains("reconnecting"),
        "the restart went unnoticed:\n{logs}"
    );
}

/// Redis gone for longer than a lease: the worker stops its attempts as lost
/// and must leave their lease behind, so that once Redis is back the jobs are
/// found dead and run again rather than left running forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_a_lease_loses_nothing() {
    let aof = Aof::new();
    let args = aof.args();
    let mut env = TestEnv::with_redis(RedisServer::spawn(&args, aof.url.clone()), CONFIG);
    let worker = env.worker(&[], &[]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/slow", json!({}), 2).await;
    wait_running(&client, &ids, 2).await;
    drop(client);

    env.redis.stop();
    worker.wait_for_log("lease lost");
    env.redis = RedisServer::spawn(&args, aof.url.clone());
    let client = env.client().await;
    let jobs = env.finish(&client, &ids).await;
    assert!(
        jobs.iter()
            .all(|j| j.status == "succeeded" && j.attempt == 2),
        "{jobs:#?}\n{}",
        env.logs()
    );
}

/// After an outage long enough that a doubling reconnect pause would have
/// grown to seconds, work resumes within a second of Redis's return: a job
/// enqueued as soon as Redis answers starts within a second, by Redis time.
/// (The one timing bound in the suite: it is the guarantee itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_resumes_within_a_second_of_redis_coming_back() {
    let aof = Aof::new();
    let args = aof.args();
    let mut env = TestEnv::with_redis(RedisServer::spawn(&args, aof.url.clone()), CONFIG);
    let worker = env.worker(&[], &[]);
    worker.wait_for_log("worker started");
    env.redis.stop();
    // Long enough for many failed tries: the old pause doubled up to 5 s.
    worker.wait_for_log("retrying");
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    env.redis = RedisServer::spawn(&args, aof.url.clone());
    let client = env.client().await;
    let id = client
        .enqueue(sluice_producer::JobRequest::new("f/work", json!({})))
        .await
        .unwrap();
    let job = env
        .finish(&client, std::slice::from_ref(&id))
        .await
        .remove(0);
    let waited = job.started_at.unwrap() - job.created_at.unwrap();
    assert!(
        waited < 1000,
        "the job started {waited} ms after Redis was back\n{}",
        env.logs()
    );
}

/// A redis-server with an append-only file in a directory of its own, on a
/// free port, to be stopped and started again on the same data.
struct Aof {
    port: String,
    dir: std::path::PathBuf,
    url: String,
}

impl Aof {
    fn new() -> Aof {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("sluice-aof-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Aof {
            port: port.to_string(),
            url: format!("redis://127.0.0.1:{port}"),
            dir,
        }
    }

    fn args(&self) -> Vec<&str> {
        vec![
            "--port",
            &self.port,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            self.dir.to_str().unwrap(),
        ]
    }
}

impl Drop for Aof {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
