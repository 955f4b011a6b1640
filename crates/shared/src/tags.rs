//! Tags route jobs to the workers that can run them. A job's tag is its
//! script's (`[scripts."p"] tag`), or for a flow's step its flow's; a worker
//! serves the tags of `[worker] tags`. Each tag has its own queues
//! (queues.lua), and every tag in use is listed in the namespace's
//! registry, a set that only grows, so that every script can declare the
//! queues of any job it may touch.
//!
//! A process keeps the registry's members in its [`Keys`]. A script called
//! with a view that is out of date refuses with `STALETAGS` before writing
//! anything; the call then reads the registry again and is made once more
//! (see [`crate::scripts::Invocation::query`]).

use redis::aio::ConnectionLike;

use crate::error::{Error, Result};
use crate::Keys;

/// The longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 64;

/// Checks a tag's name: 1 to 64 bytes of ASCII letters, digits, `_`, `.`
/// and `-`, so that it reads the same in a key name, a config and a log.
pub fn check_tag(tag: &str, at: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_BYTES
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            at,
            format!(
                "tag {tag:?} must be 1 to {MAX_TAG_BYTES} bytes of letters, digits, '_', '.' and '-'"
            ),
        ))
    }
}

/// Registers `tags`, this process's own tags and the default tag (so that
/// every script can always declare at least one queue), then reads the
/// whole registry into `keys`, in one round trip.
pub async fn refresh<C: ConnectionLike>(keys: &Keys, con: &mut C, tags: &[&str]) -> Result<()> {
    let own = keys.own_tags();
    let mut add: Vec<&str> = own.iter().map(String::as_str).collect();
    add.extend_from_slice(tags);
    add.push(crate::keys::DEFAULT_TAG);
    let mut pipe = redis::pipe();
    if !add.is_empty() {
        pipe.sadd(keys.tags_registry(), &add).ignore();
    }
    pipe.smembers(keys.tags_registry());
    crate::scripts::count_round_trip();
    let (known,): (Vec<String>,) = pipe.query_async(con).await?;
    keys.set_known_tags(known);
    Ok(())
}

/// Reads the registry: the tags in use now, sorted (for tools that look at
/// every tag's queues).
pub async fn known<C: ConnectionLike>(
    keys: &Keys,
    con: &mut C,
) -> Result<std::sync::Arc<Vec<String>>> {
    refresh(keys, con, &[]).await?;
    Ok(keys.known_tags())
}

/// Makes sure each of `tags` is registered and known to `keys`: a no-op
/// when they all are already.
pub async fn ensure<C: ConnectionLike>(keys: &Keys, con: &mut C, tags: &[&str]) -> Result<()> {
    if tags.iter().all(|t| keys.knows_tag(t)) {
        return Ok(());
    }
    refresh(keys, con, tags).await
}

/// Whether a script refused a call because the caller's view of the
/// registry was out of date.
pub fn is_stale(e: &redis::RedisError) -> bool {
    // A script's reply inside a pipeline (its call followed by WAIT) comes
    // back as a pipeline error, whose code() is none for an unknown code.
    e.code() == Some("STALETAGS")
        || e.clone()
            .into_server_errors()
            .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "STALETAGS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_are_checked() {
        for good in ["default", "gpu", "eu-west.1", "a_b", &"x".repeat(64)] {
            assert!(check_tag(good, "t").is_ok(), "{good}");
        }
        for bad in ["", "a b", "a:b", "é", "a\nb", &"x".repeat(65), "{p}"] {
            let e = check_tag(bad, "worker.tags").unwrap_err().to_string();
            assert!(e.contains("worker.tags"), "{e}");
        }
    }
}
