use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Sluice's libraries. Each message says what
/// is wrong and where (which setting, which argument, which job).
#[derive(Debug, Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("unknown path {0:?}: it is not among the scripts or flows of the config")]
    UnknownPath(String),
    #[error("concurrency key template {template:?}: {reason}")]
    Template { template: String, reason: String },
    #[error("job {0} not found")]
    JobNotFound(String),
    #[error("Redis at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis connection pool: {0}")]
    Pool(String),
    /// A batch failed part way: the jobs in `written` (the first ones, in
    /// order) were enqueued and will run; those in `in_doubt` (the next
    /// ones) may or may not have been, because the connection failed while
    /// Redis had their call; the rest were not.
    #[error("only the first {} jobs of the batch were enqueued, and {} more may have been (their ids are printed, the doubtful ones marked): {source}", written.len(), in_doubt.len())]
    PartlyEnqueued {
        written: Vec<String>,
        in_doubt: Vec<String>,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl From<deadpool_redis::PoolError> for Error {
    fn from(e: deadpool_redis::PoolError) -> Self {
        match e {
            deadpool_redis::PoolError::Backend(e) => Error::Redis(e),
            other => Error::Pool(other.to_string()),
        }
    }
}

impl From<redis::ParsingError> for Error {
    fn from(e: redis::ParsingError) -> Self {
        Error::Redis(e.into())
    }
}
