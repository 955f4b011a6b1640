//! An attempt never outlives its lease: a worker that dies, freezes or is
//! cut off from Redis has stopped its commands, grandchildren included,
//! before another worker can take its jobs over. Judged from the commands'
//! own logs.

use sluice_tests::*;

fn config(log: &std::path::Path, lease_s: u32, secs: f64) -> String {
    format!(
        r#"
[worker]
concurrency = 2
lease_s = {lease_s}

[scripts."f/long"]
command = {}
max_attempts = 5
concurrency = {{ max = 1, window_s = 0 }}
"#,
        logging_command(log, secs)
    )
}

/// How the first worker is taken out of the game once its job runs.
enum Fault {
    Kill,
    Freeze,
    Partition,
}

/// One job on a `max = 1` key: a first worker starts it and meets `fault`;
/// a second worker takes the job over. Every process of the first attempt
/// must be dead before its lease's last deadline in Redis (after which
/// recovery may start), so the attempts never overlap; and the first attempt
/// is never recorded as a failure of its own.
async fn take_over_after(fault: Fault) {
    let dir = Scratch::new("fence");
    let log = dir.path("commands.log");
    let env = TestEnv::new(&config(&log, 1, 4.0));
    let leases = LeaseWatch::start(&env);
    let proxy = Proxy::start(&env.redis.url);
    let first = env.worker(&[], &[("SLUICE_REDIS_URL", &proxy.url)]);
    let client = env.client().await;
    let ids = env.enqueue(&client, "f/long", json!({}), 1).await;
    wait_until("attempt 1 to start", || {
        read_command_log(&log)
            .iter()
            .any(|l| l.kind == "START" && l.attempt == 1)
    });
    match fault {
        Fault::Kill => first.signal("KILL"),
        Fault::Freeze => first.signal("STOP"),
        Fault::Partition => proxy.hang(),
    }
    let _second = env.worker(&[], &[]);
    let job = env.finish(&client, &ids).await.remove(0);
    assert_eq!(
        (job.status.as_str(), job.attempt),
        ("succeeded", 2),
        "{job:?}"
    );
    let lines = read_command_log(&log);
    assert_attempts_never_overlap(&lines);
    let deadline_ms = leases.deadline_of(&ids[0], 1).expect("attempt 1's lease");
    for l in lines.iter().filter(|l| l.attempt == 1) {
        assert!(
            l.ns < deadline_ms * 1_000_000,
            "attempt 1 was alive ({} line of pid {}) {} ms after its lease ran out in Redis",
            l.kind,
            l.pid,
            (l.ns - deadline_ms * 1_000_000) / 1_000_000
        );
    }
    match fault {
        Fault::Kill => {}
        Fault::Freeze => first.signal("CONT"),
        Fault::Partition => proxy.resume(),
    }
    if !matches!(fault, Fault::Kill) {
        // Thawed or reconnected, the first worker drops the attempt as lost:
        // its kill at the deadline is not a failure of the job.
        first.wait_for_log("lease lost");
        assert!(
            !first.log_text().contains("signal: 9"),
            "{}",
            first.log_text()
        );
        let again = client.job(&ids[0]).await.unwrap().unwrap();
        assert_eq!((again.status.as_str(), again.attempt), ("succeeded", 2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_commands_die_with_it() {
    take_over_after(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_redis_stops_its_commands_before_recovery() {
    take_over_after(Fault::Partition).await;
}

/// A frozen worker (SIGSTOP: it can neither renew nor act) still fences:
/// each command's supervisor kills it at the lease's local deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_workers_commands_stop_at_its_deadline() {
    take_over_after(Fault::Freeze).await;
}

/// The lifeline alone: with a 60 s lease and a 45 s command, neither the
/// deadline nor the command's end comes soon, so the command and its
/// grandchild die because the worker did, while its lease still has most of
/// its time to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_workers_process_tree_dies_at_once() {
    let dir = Scratch::new("fence");
    let log = dir.path("commands.log");
    let env = TestEnv::new(&config(&log, 60, 45.0));
    let worker = env.worker(&[], &[]);
    let client = env.client().await;
    env.enqueue(&client, "f/long", json!({}), 1).await;
    let pids = || -> Vec<i32> {
        let lines = read_command_log(&log);
        let mut p: Vec<i32> = lines.iter().map(|l| l.pid).collect();
        p.dedup();
        p
    };
    wait_until("the command and its grandchild to log", || {
        let lines = read_command_log(&log);
        lines.iter().any(|l| l.kind == "START") && lines.iter().any(|l| l.kind == "HB")
    });
    let mut r = env.redis();
    let lease: Vec<(String, f64)> = zrange_withscores(&mut r, &env.key("leases"));
    worker.signal("KILL");
    wait_until("every process of the job to die", || {
        !pids().into_iter().any(alive)
    });
    let now = redis_now_ms(&mut r);
    assert!(
        (lease[0].1 as i64) - now > 30_000,
        "the processes died only near the lease's end ({} ms left): not by the lifeline",
        lease[0].1 as i64 - now
    );
}
