//! The key index, `{p}:idx:keys`: every keyed job of a partition in one
//! sorted set, found by its key.
//!
//! Every member has score 0, so the set is ordered by its members, which are
//! `<len>:<key><created><id>`: the key's length in bytes in decimal and a
//! colon, the key, the job's creation (Unix ms, 13 digits), its id (36
//! bytes). A decimal length followed by a colon is never the start of
//! another length, so `<len>:<key>` begins the members of that key and of no
//! other, and each key's jobs are one lexical range, oldest first. The Lua
//! side writes it (`key_index_member` in records.lua) and purge.lua removes
//! from it; this module reads it.
//!
//! Namespaces written before the index kept a sorted set per key
//! ([`Keys::legacy_idx_key`]); readers still read those, so their jobs stay
//! listed until retention removes them.

use redis::aio::ConnectionLike;

use crate::error::Result;
use crate::Keys;

/// Bytes of a job id, the end of every member.
const ID_LEN: usize = 36;

/// The member for job `id` of key `ckey`, created at `created_ms`.
pub fn member(ckey: &str, created_ms: i64, id: &str) -> String {
    format!("{}:{ckey}{created_ms}{id}", ckey.len())
}

/// The ZRANGEBYLEX bounds that hold exactly the members of `ckey`: from its
/// prefix (inclusive) to its prefix followed by `;`, which sorts after every
/// digit a creation time starts with (exclusive).
pub fn bounds(ckey: &str) -> (String, String) {
    let prefix = format!("{}:{ckey}", ckey.len());
    (format!("[{prefix}"), format!("({prefix};"))
}

/// The job id a member ends with; `None` for one too short to hold one,
/// which no writer makes.
pub fn id_of(member: &str) -> Option<&str> {
    member
        .len()
        .checked_sub(ID_LEN)
        .and_then(|at| member.get(at..))
}

/// Where a walk of one key's jobs, newest first, goes on from.
#[derive(Clone, Debug, Default)]
pub struct Cursor {
    /// The last member of the key index read: the next page starts below
    /// it, found in O(log n) however deep the walk (an offset would be
    /// walked over member by member).
    below: Option<String>,
    /// Ids read so far from an older namespace's set of the key (ranks).
    legacy_read: usize,
    /// Whether the key index's range is exhausted, and the walk is in the
    /// older set.
    in_legacy: bool,
}

/// The next at most `count` ids of key `ckey`'s jobs, newest created first,
/// from where `cursor` stands, which moves on; none when the walk is over.
/// The key index comes first, then the key's own set of an older namespace
/// (written before the index existed, so older than anything indexed).
pub async fn next_page<C: ConnectionLike>(
    con: &mut C,
    keys: &Keys,
    ckey: &str,
    cursor: &mut Cursor,
    count: usize,
) -> Result<Vec<String>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if !cursor.in_legacy {
        let (min, max) = bounds(ckey);
        let max = cursor.below.as_ref().map_or(max, |m| format!("({m}"));
        let members: Vec<String> = newest_below(keys, &max, &min, count)
            .query_async(&mut *con)
            .await?;
        if !members.is_empty() {
            cursor.below = members.last().cloned();
            return Ok(ids_in(&members));
        }
        cursor.in_legacy = true;
    }
    let from = cursor.legacy_read;
    let ids: Vec<String> = redis::cmd("ZREVRANGE")
        .arg(keys.legacy_idx_key(ckey))
        .arg(from)
        .arg(from + count - 1)
        .query_async(con)
        .await?;
    cursor.legacy_read += ids.len();
    Ok(ids)
}

/// Adds to `pipe` the reads of key `ckey`'s `count` newest jobs: two
/// replies, the key index's members and an older namespace's ids, which
/// [`newest_of`] joins. For a caller that wants them in one snapshot with
/// other reads.
pub fn read_newest(pipe: &mut redis::Pipeline, keys: &Keys, ckey: &str, count: usize) {
    let (min, max) = bounds(ckey);
    pipe.add_command(newest_below(keys, &max, &min, count))
        .zrevrange(keys.legacy_idx_key(ckey), 0, count as isize - 1);
}

/// The ids of the `count` newest jobs, from [`read_newest`]'s two replies:
/// the index's first, then the older set's, older than any indexed.
pub fn newest_of(members: &[String], legacy: Vec<String>, count: usize) -> Vec<String> {
    let mut ids = ids_in(members);
    ids.extend(legacy);
    ids.truncate(count);
    ids
}

/// The read of at most `count` members of the key index from `max` down to
/// `min` (lexical bounds), newest first.
fn newest_below(keys: &Keys, max: &str, min: &str, count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("ZREVRANGEBYLEX");
    cmd.arg(keys.key_index())
        .arg(max)
        .arg(min)
        .arg("LIMIT")
        .arg(0)
        .arg(count);
    cmd
}

/// The job ids that members end with.
fn ids_in(members: &[String]) -> Vec<String> {
    members
        .iter()
        .filter_map(|m| id_of(m).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_ends_with_its_id_and_falls_inside_its_keys_bounds_only() {
        let id = "01936f0e-8c2a-7e4b-9f3d-2a1b3c4d5e6f";
        let m = member("acme/a-1", 1_795_640_766_154, id);
        assert_eq!(m, format!("8:acme/a-11795640766154{id}"));
        assert_eq!(id_of(&m), Some(id));
        let inside = |k: &str| {
            let (min, max) = bounds(k);
            m.as_str() >= &min[1..] && m.as_str() < &max[1..]
        };
        assert!(inside("acme/a-1"));
        // A key that is a prefix of it, or has it as a prefix, or differs
        // only in length, or has its length and another last byte (one
        // sorting just below or above the bounds' own `;`), holds none of
        // its members.
        let same_length = ["acme/a-2", "acme/a-0", "acme/a-:", "acme/a-;", "acme/a-<"];
        let others = ["acme/a-", "acme/a-11", "acme/a-1795", "", "8:acme/a-1"];
        for other in same_length.into_iter().chain(others) {
            assert!(!inside(other), "{other:?}");
        }
        assert_eq!(id_of("short"), None);
    }
}
