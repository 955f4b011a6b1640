//! The `cluster` scenario: one workload of keyed jobs on a Redis Cluster of
//! 1 primary and then of 3, the namespace split into 6 partitions. It
//! reports, per primary, the commands and the Redis CPU per job, how evenly
//! they spread, and from those the throughput the cluster could carry: the
//! busiest primary bounds it. This machine's 2 cores run every primary, the
//! worker and the producer at once, so its jobs/s cannot show the gain; the
//! per-primary CPU can.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use sluice_producer::{Client, JobRequest};
use sluice_shared::Config;

use crate::fleet::{BenchResult, Fleet};
use crate::redis_stats::{command_calls, info_field, reset, script_calls, work_commands};
use crate::scenarios::{size, Args};

/// Partitions of the benchmark's namespace: 2 per primary of the larger cluster.
const PARTITIONS: usize = 6;
/// Distinct keys, as in the `keyed` scenario.
const KEYS: usize = 10_000;

/// redis-server processes joined into one cluster, slots split evenly.
struct LocalCluster {
    nodes: Vec<(Child, u16)>,
    dir: std::path::PathBuf,
}

impl LocalCluster {
    fn start(primaries: usize) -> BenchResult<LocalCluster> {
        let dir = std::env::temp_dir().join(format!(
            "sluice-bench-cluster-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut nodes = Vec::new();
        for _ in 0..primaries {
            let port = free_port_pair()?;
            let child = Command::new("redis-server")
                .current_dir(&dir)
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--port", &port.to_string(), "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e}"))?;
            nodes.push((child, port));
        }
        let cluster = LocalCluster { nodes, dir };
        // Each node owns an equal, contiguous range of the slots, as
        // `redis-cli --cluster create` would give them (it needs 3 or more).
        for (i, (_, port)) in cluster.nodes.iter().enumerate() {
            let mut con = cluster.connect(*port)?;
            let lo = i * 16384 / primaries;
            let hi = (i + 1) * 16384 / primaries - 1;
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(lo)
                .arg(hi)
                .query(&mut con)
                .map_err(|e| e.to_string())?;
            if i > 0 {
                let _: () = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(cluster.nodes[0].1)
                    .query(&mut con)
                    .map_err(|e| e.to_string())?;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|(_, p)| {
            cluster
                .connect(*p)
                .and_then(|mut c| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut c)
                        .map_err(|e| e.to_string())
                })
                .is_ok_and(|i| {
                    i.contains("cluster_state:ok")
                        && i.contains(&format!("cluster_known_nodes:{primaries}"))
                })
        }) {
            if Instant::now() > deadline {
                return Err("the benchmark's cluster did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    fn connect(&self, port: u16) -> BenchResult<redis::Connection> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match redis::Client::open(format!("redis://127.0.0.1:{port}").as_str())
                .and_then(|c| c.get_connection())
            {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => return Err(format!("node {port}: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(_, p)| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (c, _) in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port_pair() -> BenchResult<u16> {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let p = l.local_addr().map_err(|e| e.to_string())?.port();
        if p < 55000 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return Ok(p);
        }
    }
    Err("no free port pair".into())
}

fn node_cpu_s(con: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(con).unwrap_or_default();
    info_field(&info, "used_cpu_user_main_thread").unwrap_or(0.0)
        + info_field(&info, "used_cpu_sys_main_thread").unwrap_or(0.0)
}

fn write_config(
    dir: &Path,
    urls: &[String],
    prefix: &str,
    concurrency: usize,
) -> std::path::PathBuf {
    let path = dir.join(format!("{prefix}.toml"));
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let body = format!(
        "cluster_urls = [{}]\nprefix = {prefix:?}\npartitions = {PARTITIONS}\n[worker]\nconcurrency = {concurrency}\n[scripts.\"bench/keyed\"]\nconcurrency = {{ max = 1000, window_s = 0, key = \"k/$args[k]\" }}\n",
        urls.join(", ")
    );
    std::fs::write(&path, body).expect("write bench config");
    path
}

/// The workload on a cluster of `primaries`: figures per primary and overall.
async fn run_on(
    args: &Args,
    primaries: usize,
    n: usize,
    keys: usize,
) -> BenchResult<Map<String, Value>> {
    let cluster = LocalCluster::start(primaries)?;
    let prefix = format!("sb{}", &uuid::Uuid::now_v7().simple().to_string()[28..]);
    let dir = std::env::temp_dir().join("sluice-bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config_path = write_config(&dir, &cluster.urls(), &prefix, args.concurrency);
    let config =
        Config::load_with_env(Some(&config_path), Default::default()).map_err(|e| e.to_string())?;
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    let mut cons: Vec<redis::Connection> = cluster
        .nodes
        .iter()
        .map(|(_, p)| cluster.connect(*p))
        .collect::<BenchResult<_>>()?;
    let workers = args.workers.unwrap_or(1);
    let fleet = Fleet::start(workers, &config_path);
    // Idle: every worker blocks once per partition, on whichever node holds it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let blocked: f64 = cons
            .iter_mut()
            .map(|c| {
                let info: String = redis::cmd("INFO")
                    .arg("clients")
                    .query(c)
                    .unwrap_or_default();
                info_field(&info, "blocked_clients").unwrap_or(0.0)
            })
            .sum();
        if blocked as usize >= workers * PARTITIONS {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {blocked} of {} partition loops became idle",
                workers * PARTITIONS
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu0: Vec<f64> = cons.iter_mut().map(node_cpu_s).collect();
    for c in cons.iter_mut() {
        reset(c);
    }
    let reqs: Vec<JobRequest> = (0..n)
        .map(|i| JobRequest::new("bench/keyed", json!({ "k": i % keys })))
        .collect();
    let started = Instant::now();
    for chunk in reqs.chunks(1000) {
        client
            .enqueue_batch(chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    // Done when no partition holds an unfinished job (HGET is not counted
    // as job work).
    let parts = client.partitions();
    let stats: Vec<String> = parts.all().iter().map(|k| k.stats()).collect();
    let mut pollers: Vec<(usize, String)> = Vec::new();
    for s in &stats {
        let node = (0..primaries)
            .find(|&i| {
                let slot = sluice_shared::partitions::slot(&s[1..s.find('}').unwrap_or(1)]);
                (i as u32 * 16384 / primaries as u32..(i as u32 + 1) * 16384 / primaries as u32)
                    .contains(&slot)
            })
            .unwrap_or(0);
        pollers.push((node, s.clone()));
    }
    let field = |cons: &mut Vec<redis::Connection>, f: &str| -> i64 {
        pollers
            .iter()
            .map(|(node, key)| {
                redis::cmd("HGET")
                    .arg(key)
                    .arg(f)
                    .query::<Option<i64>>(&mut cons[*node])
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(1800);
    // Enqueued in full before this: active reaches 0 only once all ended.
    while field(&mut cons, "active") > 0 {
        if Instant::now() > deadline {
            return Err("jobs did not finish within 30 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = started.elapsed().as_secs_f64();
    let ok = field(&mut cons, "succeeded");
    fleet.stop();
    if ok != n as i64 {
        return Err(format!("JOBS LOST OR FAILED: {ok} of {n} succeeded"));
    }
    let mut per = Vec::new();
    for (i, c) in cons.iter_mut().enumerate() {
        let calls = command_calls(c);
        let cpu = node_cpu_s(c) - cpu0[i];
        per.push(json!({
            "port": cluster.nodes[i].1,
            "partitions": pollers.iter().filter(|(node, _)| *node == i).count(),
            "commands_per_job": work_commands(&calls, 0, 0) as f64 / n as f64,
            "script_calls_per_job": script_calls(&calls) as f64 / n as f64,
            "redis_cpu_us_per_job": cpu * 1e6 / n as f64,
            "cpu_s": cpu,
        }));
    }
    let f64_of = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let cmds: Vec<f64> = per.iter().map(|p| f64_of(p, "commands_per_job")).collect();
    let busiest_cpu = per.iter().map(|p| f64_of(p, "cpu_s")).fold(0.0, f64::max);
    let total_cpu: f64 = per.iter().map(|p| f64_of(p, "cpu_s")).sum();
    let max_cmds = cmds.iter().copied().fold(0.0, f64::max);
    let min_cmds = cmds.iter().copied().fold(f64::INFINITY, f64::min);
    let mut f = Map::new();
    f.insert("primaries".into(), json!(primaries));
    f.insert("jobs_per_s".into(), json!((n as f64 / secs).round()));
    f.insert(
        "redis_cpu_us_per_job".into(),
        json!(total_cpu * 1e6 / n as f64),
    );
    f.insert("commands_per_job".into(), json!(cmds.iter().sum::<f64>()));
    f.insert(
        "busiest_over_least_busy_commands".into(),
        json!((max_cmds / min_cmds.max(1e-9) * 100.0).round() / 100.0),
    );
    // What the cluster could carry if each primary had a core of its own:
    // the busiest one saturates first.
    f.insert(
        "redis_bound_jobs_per_s".into(),
        json!((n as f64 / busiest_cpu.max(1e-9)).round()),
    );
    f.insert("per_primary".into(), Value::Array(per));
    Ok(f)
}

pub async fn cluster(args: &Args) -> BenchResult<Map<String, Value>> {
    let n = size(args, 20_000, 2_000);
    let keys = if args.smoke { 1_000 } else { KEYS };
    let one = run_on(args, 1, n, keys).await?;
    let three = run_on(args, 3, n, keys).await?;
    let bound = |m: &Map<String, Value>| m["redis_bound_jobs_per_s"].as_f64().unwrap_or(0.0);
    let mut f = Map::new();
    f.insert("jobs".into(), json!(n));
    f.insert("keys".into(), json!(keys));
    f.insert("partitions".into(), json!(PARTITIONS));
    // The projection: Redis-bound throughput gained per primary added.
    f.insert(
        "projected_jobs_per_s_per_added_primary".into(),
        json!(((bound(&three) - bound(&one)) / 2.0).round()),
    );
    f.insert(
        "busiest_over_least_busy_commands".into(),
        three["busiest_over_least_busy_commands"].clone(),
    );
    f.insert("jobs_per_s".into(), three["jobs_per_s"].clone());
    f.insert("primaries_1".into(), Value::Object(one));
    f.insert("primaries_3".into(), Value::Object(three));
    Ok(f)
}
