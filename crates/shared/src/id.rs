//! Job ids: a UUIDv7 each, so that ids sort by creation and a batch's ids
//! keep its order. Redis stores them as their 36-byte text.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A job's id. It reads as its text wherever a `&str` is taken.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A new id (UUIDv7: later ids of this process sort after earlier ones).
    // No Default: a default id would silently be a fresh one.
    #[allow(clippy::new_without_default)]
    pub fn new() -> JobId {
        JobId(uuid::Uuid::now_v7().to_string())
    }

    /// A new id that tells partition `partition` (of at most 256): its last
    /// byte, which is random in a plain UUIDv7, holds the partition, so
    /// `status` and `cancel` find a job's partition without a lookup.
    pub fn in_partition(partition: usize) -> JobId {
        let mut b = *uuid::Uuid::now_v7().as_bytes();
        b[15] = partition as u8;
        JobId(uuid::Uuid::from_bytes(b).to_string())
    }

    /// The partition this id tells, out of `count`: its last byte (two hex
    /// digits) modulo the count. Any text gives some partition; one that is
    /// not an id then finds no job there.
    pub fn partition_of(id: &str, count: usize) -> usize {
        let last = id.get(id.len().saturating_sub(2)..).unwrap_or("");
        u8::from_str_radix(last, 16).map_or(0, |b| b as usize % count.max(1))
    }

    /// Reads an id as the command line and the scripts write it: a
    /// hyphenated UUID, 36 bytes. Anything else is refused, naming it.
    pub fn parse(s: &str) -> Result<JobId> {
        match uuid::Uuid::try_parse(s) {
            Ok(u) if s.len() == 36 => Ok(JobId(u.hyphenated().to_string())),
            _ => Err(Error::invalid(
                "job id",
                format!(
                    "{:?} is not a job id (a UUID such as 01936f0e-8c2a-7e4b-9f3d-2a1b3c4d5e6f)",
                    s.chars().take(64).collect::<String>()
                ),
            )),
        }
    }

    /// An id read back from Redis, as it is.
    pub fn from_stored(s: String) -> JobId {
        JobId(s)
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for JobId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for JobId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<JobId> {
        JobId::parse(s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl PartialEq<str> for JobId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for JobId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for JobId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<JobId> for String {
    fn eq(&self, other: &JobId) -> bool {
        *self == other.0
    }
}

impl PartialEq<JobId> for &str {
    fn eq(&self, other: &JobId) -> bool {
        *self == other.0
    }
}

impl redis::ToRedisArgs for JobId {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.0.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_and_parse_back() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
        assert_eq!(JobId::parse(&a).unwrap(), a);
        assert_eq!(a.len(), 36);
        for bad in [
            "",
            "x",
            "01936f0e8c2a7e4b9f3d2a1b3c4d5e6f",
            "01936f0e-8c2a-7e4b-9f3d-2a1b3c4d5e6f\n",
        ] {
            let e = JobId::parse(bad).unwrap_err().to_string();
            assert!(e.contains("job id"), "{e}");
        }
    }
}
