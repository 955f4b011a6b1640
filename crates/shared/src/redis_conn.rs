//! Connections. Ordinary commands go through a deadpool pool of multiplexed
//! connections with a response timeout; blocking reads (BLPOP) get a dedicated
//! connection with none, since a timeout shorter than the block would break them.

use std::time::Duration;

use deadpool_redis::{Manager, Pool};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use crate::error::{Error, Result};

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// rediss:// needs a TLS crypto provider chosen for the process; without one
/// rustls panics at the first TLS connection.
fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A pool of up to `size` connections to `url`, with connect and response
/// timeouts. It connects only when used: [`ping`] checks that Redis answers.
pub fn pool(url: &str, size: usize) -> Result<Pool> {
    tls_provider();
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let manager = Manager::new_with_config(url, cfg).map_err(|e| Error::Connect {
        url: redacted(url),
        source: e,
    })?;
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| Error::Pool(e.to_string()))
}

/// A connection of its own for blocking commands: no response timeout.
pub async fn blocking_connection(url: &str) -> Result<MultiplexedConnection> {
    tls_provider();
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None);
    let connect = async {
        redis::Client::open(url)?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    };
    connect.await.map_err(|e| Error::Connect {
        url: redacted(url),
        source: e,
    })
}

/// Checks that Redis answers, so a bad URL is reported at start, by name.
pub async fn ping(pool: &Pool, url: &str) -> Result<()> {
    let attempt = async {
        let mut con = pool.get().await?;
        redis::cmd("PING").query_async::<()>(&mut *con).await?;
        Ok::<_, Error>(())
    };
    attempt.await.map_err(|e| match e {
        Error::Redis(source) => Error::Connect {
            url: redacted(url),
            source,
        },
        other => Error::Config(format!("Redis at {}: {other}", redacted(url))),
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
