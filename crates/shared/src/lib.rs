//! Shared parts of Sluice: the job model, the config, the Redis key layout and
//! the Lua scripts that the producer and the worker both rely on.

pub mod config;
pub mod entry;
/// Sluice's [`Error`] and [`Result`].
pub mod error;
pub mod flow;
pub mod handoff;
pub mod http;
pub mod id;
pub mod job;
pub mod key_index;
pub mod keys;
pub mod lease;
pub mod logging;
pub mod partitions;
pub mod records;
pub mod redis_conn;
pub mod scripts;
pub mod state;
pub mod tags;
pub mod template;

pub use config::{Config, LimitConfig};
pub use error::{Error, Result};
pub use id::JobId;
pub use job::{Job, JobKind, Status};
pub use keys::Keys;
