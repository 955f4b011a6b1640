//! An attempt never outlives its lease: a worker that dies, freezes or is
//! cut off from Redis has stopped its commands, grandchildren included,
//! before another worker can take its jobs over. Judged from the commands'
//! own logs.

use sluice_tests::*;

fn config(log: &std::path::Path) -> String {
    format!(
        r#"
[worker]
concurrency = 2
lease_s = 1

[scripts."f/long"]
command = {}
max_attempts = 5
concurrency = {{ max = 1, window_s = 0 }}
"#,
        logging_command(log, 4.0)
    )
}

/// How the first worker is taken out of the game once its job runs.
enum Fault {
    Kill,
    Freeze,
    Partition,
}

/// One job on a `max = 1` key: a first worker starts it and meets `fault`;
/// a second worker takes the job over. The attempts must never overlap.
async fn take_over_after(fault: Fault) {
    let dir = std::env::temp_dir().join(format!("sluice-fence-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("commands.log");
    let env = TestEnv::new(&config(&log));
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
    assert_attempts_never_overlap(&read_command_log(&log));
    match fault {
        Fault::Kill => {}
        Fault::Freeze => first.signal("CONT"),
        Fault::Partition => {
            // Once Redis answers again, the fenced worker's view changes nothing.
            proxy.resume();
            first.wait_for_log("no lease renewal reached Redis in time");
            let again = client.job(&ids[0]).await.unwrap().unwrap();
            assert_eq!((again.status.as_str(), again.attempt), ("succeeded", 2));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
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
/// each command's supervisor kills it at the worker's local deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_workers_commands_stop_at_its_deadline() {
    take_over_after(Fault::Freeze).await;
}
