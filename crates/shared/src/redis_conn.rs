//! Connections. Ordinary commands go through a deadpool pool with a
//! response timeout; blocking reads (BLPOP) get a dedicated connection with
//! none, since a timeout shorter than the block would break them. Redis is
//! either one server (`redis_url`) or a Redis Cluster (`cluster_urls`): the
//! same [`Pool`] and [`Connection`] types serve both, so nothing else knows
//! which. On a cluster every command is routed by its first key (a script by
//! its first declared key); MOVED and ASK replies, and a failed-over
//! primary, are followed by redis-rs's cluster client, which refreshes its
//! slot map and retries.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use crate::error::{Error, Result};

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the cluster client retries a command that met a redirection,
/// a lost connection or a primary being failed over, refreshing its slot
/// map in between (a failover takes the cluster a few seconds).
const CLUSTER_RETRIES: u32 = 12;

/// Where Redis is: one server, or the seed nodes of a Redis Cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `redis_url`.
    Single(String),
    /// `cluster_urls`: any nodes of the cluster; the client finds the rest.
    Cluster(Vec<String>),
}

impl Target {
    /// For messages: the URL(s), passwords hidden.
    pub fn describe(&self) -> String {
        match self {
            Target::Single(url) => redacted(url),
            Target::Cluster(urls) => format!(
                "cluster {}",
                urls.iter()
                    .map(|u| redacted(u))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    fn connect_error(&self, source: redis::RedisError) -> Error {
        Error::Connect {
            url: self.describe(),
            source,
        }
    }

    fn cluster_client(
        urls: &[String],
        response: Option<Duration>,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let mut b = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(CONNECT_TIMEOUT)
            .retries(CLUSTER_RETRIES);
        if let Some(t) = response {
            b = b.response_timeout(t);
        }
        b.build()
    }
}

/// rediss:// needs a TLS crypto provider chosen for the process; without one
/// rustls panics at the first TLS connection.
fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A pool of connections to one server or to a cluster.
#[derive(Clone)]
pub enum Pool {
    /// Multiplexed connections to one server.
    Single(deadpool_redis::Pool),
    /// One cluster connection, shared: it is multiplexed and holds a
    /// connection to each node itself, so a pool of them would only
    /// multiply the connections (deadpool's cluster manager also sets no
    /// response timeout, and a hung node must not hang a caller forever).
    Cluster(std::sync::Arc<SharedCluster>),
}

/// The cluster client and its one connection, made at first use.
pub struct SharedCluster {
    client: redis::cluster::ClusterClient,
    con: tokio::sync::OnceCell<ClusterConnection>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pool::Single(_) => "Pool::Single",
            Pool::Cluster(_) => "Pool::Cluster",
        })
    }
}

/// A connection taken from a [`Pool`]; `&mut *con` is a [`Connection`].
pub struct Pooled(Connection);

/// One connection to a server or to a cluster; either runs any command.
pub enum Connection {
    /// From a standalone pool.
    Single(deadpool_redis::Connection),
    /// A clone of the shared cluster connection.
    Cluster(ClusterConnection),
    /// A blocking reader's own connection to a server.
    OwnSingle(MultiplexedConnection),
    /// A blocking reader's own connection to a cluster.
    OwnCluster(ClusterConnection),
}

impl Deref for Pooled {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0
    }
}

/// A handle on the same multiplexed connection, for a task that sends
/// while the pooled one is kept (it is not returned to the pool meanwhile).
impl Clone for Connection {
    fn clone(&self) -> Connection {
        match self {
            Connection::Single(c) => Connection::OwnSingle((**c).clone()),
            Connection::OwnSingle(c) => Connection::OwnSingle(c.clone()),
            Connection::Cluster(c) | Connection::OwnCluster(c) => Connection::OwnCluster(c.clone()),
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::OwnSingle(c) => c.req_packed_command(cmd),
            Connection::OwnCluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Connection::OwnSingle(c) => c.req_packed_commands(cmd, offset, count),
            Connection::OwnCluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            Connection::OwnSingle(c) => c.get_db(),
            Connection::OwnCluster(c) => c.get_db(),
        }
    }
}

impl Pool {
    /// A connection, from the pool (made when none is idle).
    pub async fn get(&self) -> Result<Pooled> {
        Ok(Pooled(match self {
            Pool::Single(p) => Connection::Single(p.get().await?),
            Pool::Cluster(p) => Connection::Cluster(
                p.con
                    .get_or_try_init(|| p.client.get_async_connection())
                    .await?
                    .clone(),
            ),
        }))
    }

    /// Whether this pool talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Pool::Cluster(_))
    }
}

/// A pool of up to `size` connections to `target`, with connect and
/// response timeouts. It connects only when used: [`ping`] checks that
/// Redis answers.
pub fn pool(target: &Target, size: usize) -> Result<Pool> {
    tls_provider();
    match target {
        Target::Single(url) => {
            let cfg = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            let manager = deadpool_redis::Manager::new_with_config(url.as_str(), cfg)
                .map_err(|e| target.connect_error(e))?;
            deadpool_redis::Pool::builder(manager)
                .max_size(size)
                .build()
                .map(Pool::Single)
                .map_err(|e| Error::Pool(e.to_string()))
        }
        Target::Cluster(urls) => {
            let client = Target::cluster_client(urls, Some(RESPONSE_TIMEOUT))
                .map_err(|e| target.connect_error(e))?;
            Ok(Pool::Cluster(std::sync::Arc::new(SharedCluster {
                client,
                con: tokio::sync::OnceCell::new(),
            })))
        }
    }
}

/// A connection of its own for blocking commands: no response timeout.
pub async fn blocking_connection(target: &Target) -> Result<Connection> {
    tls_provider();
    let connect = async {
        Ok::<_, redis::RedisError>(match target {
            Target::Single(url) => {
                let cfg = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(None);
                Connection::OwnSingle(
                    redis::Client::open(url.as_str())?
                        .get_multiplexed_async_connection_with_config(&cfg)
                        .await?,
                )
            }
            Target::Cluster(urls) => Connection::OwnCluster(
                Target::cluster_client(urls, None)?
                    .get_async_connection()
                    .await?,
            ),
        })
    };
    connect.await.map_err(|e| target.connect_error(e))
}

/// Checks that Redis answers, so a bad URL is reported at start, by name.
pub async fn ping(pool: &Pool, target: &Target) -> Result<()> {
    let attempt = async {
        let mut con = pool.get().await?;
        redis::cmd("PING").query_async::<()>(&mut *con).await?;
        Ok::<_, Error>(())
    };
    attempt.await.map_err(|e| match e {
        Error::Redis(source) => target.connect_error(source),
        other => Error::Config(format!("Redis at {}: {other}", target.describe())),
    })
}

/// Warns when Redis may evict keys under memory pressure: an evicted job,
/// lease or slots set is a job lost or a limit broken. Sluice wants
/// `maxmemory-policy noeviction` (Redis then refuses writes when full, and
/// Sluice reports them). Returns the policy, if Redis tells it.
pub async fn check_eviction(pool: &Pool) -> Option<String> {
    let mut con = pool.get().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut *con)
        .await
        .ok()?;
    let policy = info
        .lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))?
        .trim()
        .to_string();
    if policy != "noeviction" {
        tracing::warn!(
            policy = %policy,
            "Redis may evict keys when its memory is full (maxmemory-policy is not noeviction): jobs could be lost and limits broken; set maxmemory-policy noeviction"
        );
    }
    Some(policy)
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_is_hidden() {
        assert_eq!(
            super::redacted("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(super::redacted("redis://h:1"), "redis://h:1");
    }
}
