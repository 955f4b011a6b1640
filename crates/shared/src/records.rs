//! Reading jobs back from their three records (see keys.rs), a batch at a
//! time: one HMGET per hash, whatever the number of jobs.

use redis::aio::ConnectionLike;

use crate::error::Result;
use crate::job::{Job, Spec};
use crate::Keys;

/// The jobs with these ids, in order; `None` for an id with no job.
pub async fn read_jobs<C: ConnectionLike>(
    con: &mut C,
    keys: &Keys,
    ids: &[String],
) -> Result<Vec<Option<Job>>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let (specs, states, results): Fields = redis::pipe()
        .cmd("HMGET")
        .arg(keys.jobs())
        .arg(ids)
        .cmd("HMGET")
        .arg(keys.state())
        .arg(ids)
        .cmd("HMGET")
        .arg(keys.results())
        .arg(ids)
        .query_async(con)
        .await?;
    // Read as bytes and decoded leniently: one value damaged into invalid
    // UTF-8 must not make every read of its batch fail (retention, runs).
    let text = |v: Option<Vec<u8>>| v.map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(ids
        .iter()
        .zip(specs)
        .zip(states)
        .zip(results)
        .map(|(((id, spec), state), result)| {
            Job::from_records(id, text(spec), text(state), text(result))
        })
        .collect())
}

type Fields = (
    Vec<Option<Vec<u8>>>,
    Vec<Option<Vec<u8>>>,
    Vec<Option<Vec<u8>>>,
);

/// The specs of these jobs, in order; a missing or malformed one reads as
/// the default (no key, no parent).
pub async fn read_specs<C: ConnectionLike>(
    con: &mut C,
    keys: &Keys,
    ids: &[String],
) -> Result<Vec<Spec>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let raw: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
        .arg(keys.jobs())
        .arg(ids)
        .query_async(con)
        .await?;
    Ok(raw
        .into_iter()
        .map(|s| {
            s.and_then(|s| serde_json::from_slice(&s).ok())
                .unwrap_or_default()
        })
        .collect())
}
