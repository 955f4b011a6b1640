//! Test harness: a real `redis-server` per test on a free port (or
//! `SLUICE_TEST_REDIS_URL`), a key prefix per test, and real `sluice-worker`
//! and `sluice` processes built from this workspace.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::FromRedisValue;
use serde_json::Value;
use sluice_producer::{Client, Job, JobId, JobRequest};
use sluice_shared::Config;

pub use serde_json::json;

mod browser;
pub use browser::{http, Browser, UiProcess};

/// Upper bound on waiting for an event; tests wait for events, and this only
/// stops a broken test from hanging CI.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct RedisServer {
    child: Option<Child>,
    pub url: String,
    /// A Redis Cluster's nodes (the first `primaries` are its primaries at
    /// start), when this is a cluster; `url` is then the first node's.
    pub nodes: Vec<ClusterNode>,
}

/// One `redis-server` of a test's cluster.
pub struct ClusterNode {
    pub child: Option<Child>,
    pub url: String,
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether this run puts tests on a Redis Cluster (`SLUICE_TEST_CLUSTER=1`,
/// set by scripts/test.sh for the suites it runs there again).
pub fn on_cluster() -> bool {
    std::env::var("SLUICE_TEST_CLUSTER").is_ok_and(|v| v == "1")
}

impl RedisServer {
    pub fn start() -> RedisServer {
        if on_cluster() {
            return RedisServer::cluster(3, 0);
        }
        if let Ok(url) = std::env::var("SLUICE_TEST_REDIS_URL") {
            return RedisServer {
                child: None,
                url,
                nodes: Vec::new(),
            };
        }
        let port = free_port();
        RedisServer::spawn(
            &["--port", &port.to_string()],
            format!("redis://127.0.0.1:{port}"),
        )
    }

    /// A server of this test's own with extra arguments (TLS, ACL users),
    /// reached at `url`; ready once `url` answers PING.
    pub fn spawn(args: &[&str], url: String) -> RedisServer {
        // Files (a replica's sync snapshot) go to the temp dir unless the
        // test names a --dir of its own (the last one counts).
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server) or SLUICE_TEST_REDIS_URL set");
        let server = RedisServer {
            child: Some(child),
            url,
            nodes: Vec::new(),
        };
        server.wait_ready();
        server
    }

    /// A Redis Cluster of this test's own: `primaries` primaries with
    /// `replicas` replicas each, made with `redis-cli --cluster create`,
    /// ready once every node reports `cluster_state:ok`.
    pub fn cluster(primaries: usize, replicas: usize) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("cluster-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            // The cluster bus listens on port + 10000: both must be free.
            let port = loop {
                let p = free_port();
                if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
                    break p;
                }
            };
            let child = Command::new("redis-server")
                .current_dir(&dir)
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--port", &port.to_string(), "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args([
                    "--cluster-node-timeout",
                    "2000",
                    "--repl-diskless-sync-delay",
                    "0",
                ])
                .args(["--logfile", &format!("node-{port}.log")])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            let node = ClusterNode {
                child: Some(child),
                url: format!("redis://127.0.0.1:{port}"),
            };
            RedisServer {
                child: None,
                url: node.url.clone(),
                nodes: Vec::new(),
            }
            .wait_ready();
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| n.url.trim_start_matches("redis://").to_string())
            .collect();
        let made = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        assert!(
            made.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&made.stdout)
        );
        let server = RedisServer {
            child: None,
            url: nodes[0].url.clone(),
            nodes,
        };
        wait_until("every node reports the cluster ok", || {
            server.nodes.iter().all(|n| {
                let info: String = redis::Client::open(n.url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            })
        });
        // A replica counts once its first sync is done: before, WAIT finds
        // none, and a failover would promote an empty node.
        wait_until("every replica is in sync", || {
            let online = server
                .nodes
                .iter()
                .map(|n| {
                    let info: String = redis::Client::open(n.url.as_str())
                        .and_then(|c| c.get_connection())
                        .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                        .unwrap_or_default();
                    info.matches("state=online").count()
                })
                .sum::<usize>();
            online == primaries * replicas
        });
        server
    }

    /// The URL of the primary that holds `key` now (asked of the cluster).
    pub fn node_for(&self, key: &str) -> String {
        if self.nodes.is_empty() {
            return self.url.clone();
        }
        // Any node that answers (a test may have killed some).
        let mut con = self
            .nodes
            .iter()
            .find_map(|n| {
                redis::Client::open(n.url.as_str())
                    .ok()?
                    .get_connection()
                    .ok()
            })
            .expect("no node of the cluster answers");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .unwrap();
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
        for r in ranges {
            let redis::Value::Array(r) = r else { continue };
            let (Ok(lo), Ok(hi)) = (
                i64::from_redis_value(r[0].clone()),
                i64::from_redis_value(r[1].clone()),
            ) else {
                continue;
            };
            if (lo..=hi).contains(&slot) {
                let redis::Value::Array(primary) = &r[2] else {
                    continue;
                };
                let host = String::from_redis_value(primary[0].clone()).unwrap();
                let port = i64::from_redis_value(primary[1].clone()).unwrap();
                return format!("redis://{host}:{port}");
            }
        }
        panic!("no node holds slot {slot}");
    }

    /// The config lines that point Sluice at this server or cluster.
    pub fn config_lines(&self) -> String {
        if self.nodes.is_empty() {
            format!("redis_url = {:?}", self.url)
        } else {
            let urls: Vec<String> = self.nodes.iter().map(|n| format!("{:?}", n.url)).collect();
            format!("cluster_urls = [{}]", urls.join(", "))
        }
    }

    fn wait_ready(&self) {
        // Through the same client stack as Sluice (TLS included), on a thread
        // of its own: tests call this from inside their async runtime.
        let url = self.url.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let ping = rt.block_on(async {
                    let mut c = redis::Client::open(url.as_str())?
                        .get_multiplexed_async_connection()
                        .await?;
                    redis::cmd("PING").query_async::<String>(&mut c).await
                });
                if ping.is_ok() {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not start at {url}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .join()
        .expect("redis-server did not start");
    }
}

impl RedisServer {
    /// Stops the server as an operator would (SIGTERM: it writes its
    /// append-only file and exits) and waits for it.
    pub fn stop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        self.child = None;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A built binary of this workspace (tests run from target/<profile>/deps).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// One test's world: its Redis, its prefix, its config file.
pub struct TestEnv {
    pub redis: RedisServer,
    pub prefix: String,
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

impl TestEnv {
    /// `body` is the config without `redis_url` and `prefix`, which are added.
    pub fn new(body: &str) -> TestEnv {
        TestEnv::with_redis(RedisServer::start(), body)
    }

    /// The same, against a server the test started itself.
    pub fn with_redis(redis: RedisServer, body: &str) -> TestEnv {
        let prefix = format!("t-{}", uuid::Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("sluice.toml");
        let mut f = std::fs::File::create(&config_path).unwrap();
        // SLUICE_TEST_PARTITIONS=N runs a suite with its namespaces split
        // (scripts/test.sh does for the flow suite); a test that names its
        // own count keeps it.
        let partitions = match std::env::var("SLUICE_TEST_PARTITIONS") {
            Ok(n) if !body.contains("partitions") => format!("partitions = {n}\n"),
            _ => String::new(),
        };
        writeln!(
            f,
            "{}\nprefix = {:?}\n{partitions}{body}",
            redis.config_lines(),
            prefix
        )
        .unwrap();
        TestEnv {
            redis,
            prefix,
            dir,
            config_path,
        }
    }

    pub fn config(&self) -> Config {
        Config::load_with_env(Some(&self.config_path), Default::default()).unwrap()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.config()).await.unwrap()
    }

    /// A connection to the server, or on a cluster to the primary holding
    /// this test's namespace (all of its keys share one hash slot).
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis.node_for(&self.key("jobs")).as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.prefix)
    }

    /// Starts a `sluice-worker` process; `wrapper` is a command it runs under
    /// (for example faketime), `env` extra variables (`RUST_LOG` among them
    /// replaces the default, info).
    pub fn worker(&self, wrapper: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let log = self
            .dir
            .join(format!("worker-{}.log", uuid::Uuid::now_v7().simple()));
        let (prog, mut args): (PathBuf, Vec<String>) = match wrapper.split_first() {
            None => (bin("sluice-worker"), vec![]),
            Some((p, rest)) => {
                let mut a: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                a.push(bin("sluice-worker").display().to_string());
                (PathBuf::from(p), a)
            }
        };
        args.extend([
            "--config".to_string(),
            self.config_path.display().to_string(),
        ]);
        // Its own process group, so that a wrapper's child goes with it.
        let child = Command::new(prog)
            .process_group(0)
            .args(&args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sluice-worker");
        WorkerProcess { child, log }
    }

    /// Runs the `sluice` command line with this test's config.
    pub fn sluice(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(bin("sluice"))
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    pub async fn enqueue(&self, client: &Client, path: &str, args: Value, n: usize) -> Vec<JobId> {
        let reqs: Vec<JobRequest> = (0..n)
            .map(|_| JobRequest::new(path, args.clone()))
            .collect();
        client.enqueue_batch(&reqs).await.unwrap()
    }

    /// Waits for the jobs to finish and reads them back.
    pub async fn finish<I: AsRef<str>>(&self, client: &Client, ids: &[I]) -> Vec<Job> {
        let out = client.wait(ids, Some(PATIENCE)).await.unwrap();
        assert!(
            !out.timed_out,
            "jobs did not finish: {out:?}\n{}",
            self.logs()
        );
        client
            .jobs(ids)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.unwrap())
            .collect()
    }

    /// Every worker log of this test, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                s.push_str(&format!(
                    "--- {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        s
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the worker's log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        wait_until(&format!("worker log line {needle:?}"), || {
            self.log_text().contains(needle)
        });
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // The whole group (a negative pid); "--" so that it is not read as an option.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.pid())])
            .status();
        let _ = self.child.wait();
    }
}

/// Polls a condition until it holds (an event), failing after PATIENCE.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Redis server's clock, in Unix ms.
pub fn redis_now_ms(con: &mut redis::Connection) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query(con).unwrap();
    s * 1000 + us / 1000
}

/// The most slots of one key held at once, from the jobs' own recorded times:
/// each execution holds [started_at, ended_at + window_ms).
pub fn max_slots_held(jobs: &[Job]) -> usize {
    let spans: Vec<(i64, i64)> = jobs
        .iter()
        .map(|j| {
            let s = j.started_at.expect("started_at");
            let e = j.ended_at.expect("ended_at");
            (s, e + j.window_ms.unwrap_or(0) as i64)
        })
        .collect();
    spans
        .iter()
        .map(|&(t, _)| spans.iter().filter(|&&(s, e)| s <= t && t < e).count())
        .max()
        .unwrap_or(0)
}

/// Asserts that jobs, given in enqueue order, started in that order.
pub fn assert_started_in_order(jobs: &[Job]) {
    for w in jobs.windows(2) {
        let (a, b) = (w[0].started_at.unwrap(), w[1].started_at.unwrap());
        assert!(
            a <= b,
            "job {} (enqueued first) started at {a}, after job {} at {b}",
            w[0].id,
            w[1].id
        );
    }
}

pub fn write_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Waits until at least `n` of `ids` are running.
pub async fn wait_running<I: AsRef<str>>(client: &Client, ids: &[I], n: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let jobs = client.jobs(ids).await.unwrap();
        if jobs
            .iter()
            .flatten()
            .filter(|j| j.status == "running")
            .count()
            >= n
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of the jobs never ran at once"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every member of a sorted set with its score, lowest first (slots, delayed).
pub fn zrange_withscores<S: redis::FromRedisValue>(
    con: &mut redis::Connection,
    key: &str,
) -> Vec<(String, S)> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(con)
        .unwrap()
}

/// A TCP proxy in front of Redis that the test controls: `hang` stops
/// forwarding in both directions without closing any socket, as a frozen
/// middlebox or a network partition would; `resume` lets bytes through again.
pub struct Proxy {
    pub url: String,
    hung: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let upstream = upstream
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let hung = Arc::new(AtomicBool::new(false));
        let flag = hung.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(forward(cr, sw, flag.clone()));
                    tokio::spawn(forward(sr, cw, flag.clone()));
                }
            });
        });
        Proxy {
            url: format!("redis://127.0.0.1:{port}"),
            hung,
        }
    }

    pub fn hang(&self) {
        self.hung.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.hung.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies bytes one way; while hung, holds them (reads nothing more, writes
/// nothing), keeping both sockets open.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hung: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while hung.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while hung.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// One line a command wrote to its own log (see `LOGGING_COMMAND`):
/// `<kind> <job id> <attempt> <pid> <unix ns>`, kind START, END or HB (a
/// grandchild's heartbeat).
#[derive(Clone, Debug)]
pub struct LogLine {
    pub kind: String,
    pub id: String,
    pub attempt: u32,
    pub pid: i32,
    pub ns: i64,
}

pub fn read_command_log(path: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() != 5 {
                return None;
            }
            Some(LogLine {
                kind: f[0].to_string(),
                id: f[1].to_string(),
                attempt: f[2].parse().ok()?,
                pid: f[3].parse().ok()?,
                ns: f[4].parse().ok()?,
            })
        })
        .collect()
}

/// A command for a config: logs its START to the log file, leaves a
/// grandchild (a shell of its own, so its line carries its own pid) that
/// logs a heartbeat every 50 ms for at most 10 s, sleeps `secs`, and logs
/// its END. A killed process logs nothing more, so the last heartbeat of an
/// attempt bounds when its process tree was last alive.
pub fn logging_command(log: &Path, secs: f64) -> String {
    let script = format!(
        r#"log={log:?}
line() {{ echo "$1 $SLUICE_JOB_ID $SLUICE_ATTEMPT $$ $(date +%s%N)" >> "$log"; }}
line START
sh -c 'for i in $(seq 200); do echo "HB $SLUICE_JOB_ID $SLUICE_ATTEMPT $$ $(date +%s%N)" >> "$0"; sleep 0.05; done' "$log" &
sleep {secs}
line END
echo '"done"'
"#,
        log = log.display().to_string()
    );
    format!("[\"sh\", \"-c\", {script:?}]")
}

/// Whether a process is alive (a zombie is not).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Watches a namespace's leases in the background: for each lease key, the
/// latest deadline Redis gave it (Unix ms) and the executions it held. The
/// Redis deadline is the moment after which recovery may start, so an
/// execution must be dead before its lease's last deadline.
/// Lease keys seen: name, latest deadline, items.
type SeenLeases = std::sync::Arc<std::sync::Mutex<Vec<(String, i64, Vec<String>)>>>;

pub struct LeaseWatch {
    seen: SeenLeases,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LeaseWatch {
    pub fn start(env: &TestEnv) -> LeaseWatch {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let seen: SeenLeases = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let mut con = env.redis();
        let leases = env.key("leases");
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let now: Vec<(String, f64)> = zrange_withscores(&mut con, &leases);
                for (lease, score) in now {
                    let mut seen = s.lock().unwrap();
                    match seen.iter_mut().find(|(l, _, _)| *l == lease) {
                        Some(x) => x.1 = x.1.max(score as i64),
                        None => {
                            let items: Vec<String> = redis::cmd("LRANGE")
                                .arg(&lease)
                                .arg(0)
                                .arg(-1)
                                .query(&mut con)
                                .unwrap_or_default();
                            seen.push((lease, score as i64, items));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        LeaseWatch { seen, stop }
    }

    /// The last Redis deadline of the lease that held `attempt` of job `id`.
    pub fn deadline_of(&self, id: &str, attempt: u32) -> Option<i64> {
        let item = format!("{attempt} {id}");
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(_, _, items)| items.iter().any(|i| i.starts_with(&item)))
            .map(|(_, d, _)| *d)
    }
}

impl Drop for LeaseWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Asserts that no two attempts of one job were ever alive at once, from the
/// commands' own lines: every line of an earlier attempt (its start, its end,
/// its grandchild's heartbeats) comes before the next attempt's START.
pub fn assert_attempts_never_overlap(lines: &[LogLine]) {
    use std::collections::HashMap;
    let mut starts: HashMap<(&str, u32), i64> = HashMap::new();
    for l in lines.iter().filter(|l| l.kind == "START") {
        starts.entry((&l.id, l.attempt)).or_insert(l.ns);
    }
    for l in lines {
        for (&(id, attempt), &start) in &starts {
            if id == l.id && attempt > l.attempt {
                assert!(
                    l.ns < start,
                    "attempt {} of job {id} was still alive ({} line of pid {}) {} ms after attempt {attempt} started",
                    l.attempt,
                    l.kind,
                    l.pid,
                    (l.ns - start) / 1_000_000
                );
            }
        }
    }
}

/// Most attempts alive at once among the lines `of` keeps, from the
/// commands' logs: an attempt lives from its first line to its last (END or
/// heartbeat), so one killed or fenced mid-run counts until its process
/// tree last spoke.
pub fn most_alive_at_once(lines: &[LogLine], of: impl Fn(&LogLine) -> bool) -> usize {
    use std::collections::HashMap;
    let mut span: HashMap<(&str, u32), (i64, i64)> = HashMap::new();
    for l in lines.iter().filter(|l| of(l)) {
        let s = span.entry((&l.id, l.attempt)).or_insert((l.ns, l.ns));
        s.0 = s.0.min(l.ns);
        s.1 = s.1.max(l.ns);
    }
    let mut edges: Vec<(i64, i32)> = span
        .values()
        .flat_map(|&(a, b)| [(a, 1), (b, -1)])
        .collect();
    // An end at the same instant as a start frees first.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// A directory of a test's own for the files its commands write; removed
/// when dropped, but kept when the test fails, to look at.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sluice-{what}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
