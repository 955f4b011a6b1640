use thiserror::Error;

/// A result whose error is Sluice's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Sluice's libraries. Each message says what
/// is wrong and where (which setting, which argument, which job).
#[derive(Debug, Error)]
pub enum Error {
    /// The config is missing, or a setting is wrong or unusable; the message says which.
    #[error("config: {0}")]
    Config(String),
    /// An input was refused: what it is, and why.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was refused: `args`, `workspace`, `concurrency key`, ...
        what: String,
        /// Why.
        reason: String,
    },
    /// A request named a path that is neither a script nor a flow of the config.
    #[error("unknown path {0:?}: it is not among the scripts or flows of the config")]
    UnknownPath(String),
    /// A concurrency key template is malformed, or cannot make a key from a job's args.
    #[error("concurrency key template {template:?}: {reason}")]
    Template {
        /// The template, as the config gives it.
        template: String,
        /// What is wrong: its syntax, or what a job's args give it.
        reason: String,
    },
    /// No job has this id.
    #[error("job {0} not found")]
    JobNotFound(String),
    /// Redis could not be reached.
    #[error("Redis at {url}: {source}")]
    Connect {
        /// The Redis URL, its password hidden.
        url: String,
        /// Why the connection failed.
        #[source]
        source: redis::RedisError,
    },
    /// A Redis command failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The connection pool failed other than by a Redis error (no connection in
    /// time, a bad pool setup).
    #[error("Redis connection pool: {0}")]
    Pool(String),
    /// A batch failed part way: the jobs in `written` (the first ones, in
    /// order) were enqueued and will run; those in `in_doubt` (the next
    /// ones) may or may not have been, because the connection failed while
    /// Redis had their call; the rest were not.
    #[error("only the first {} jobs of the batch were enqueued, and {} more may have been (their ids are printed, the doubtful ones marked): {source}", written.len(), in_doubt.len())]
    PartlyEnqueued {
        /// Ids of the jobs that were enqueued, in order.
        written: Vec<String>,
        /// Ids of the jobs that may or may not have been enqueued.
        in_doubt: Vec<String>,
        /// The error that cut the batch short.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// An [`Error::Invalid`]: `what` was refused, and why.
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
