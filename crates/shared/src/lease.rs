//! The codec of a lease key's items (see keys.rs): the key is a list with
//! one item per execution admitted under it, `<attempt> <entry>`. Written by
//! admit.lua (`lease_item` in records.lua), read back by the worker that
//! recovers an expired lease. A list item is binary-safe and the attempt is
//! digits up to the first space, so no byte of a concurrency key inside the
//! entry can be taken for another item or another field.

use crate::entry::ID_LEN;

/// The item for `attempt` of `entry`.
pub fn item(attempt: u32, entry: &str) -> String {
    format!("{attempt} {entry}")
}

/// `(attempt, entry)` of an item, or `None` when it is malformed, exactly
/// where `parse_lease_item` in records.lua returns nil: the entry must be
/// shaped as a job's (an id, then nothing or a space and a key).
pub fn parse_item(raw: &str) -> Option<(u32, &str)> {
    let (attempt, entry) = raw.split_once(' ')?;
    if attempt.is_empty() || attempt.len() > 9 || !attempt.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let b = entry.as_bytes();
    if b.len() < ID_LEN || (b.len() > ID_LEN && b[ID_LEN] != b' ') {
        return None;
    }
    Some((attempt.parse().ok()?, entry))
}

/// The entries of the executions in `items` ([`read`]'s answer), leaving
/// out malformed items: the jobs running under those leases.
pub fn entries(items: &[Vec<String>]) -> impl Iterator<Item = &str> {
    items
        .iter()
        .flatten()
        .filter_map(|i| parse_item(i).map(|(_, e)| e))
}

/// The items of these lease keys, in order, with one pipelined round trip.
/// A lease still written as one string of lines (by workers from before
/// leases were lists) is read too, so that its jobs are still recovered and
/// listed. Items that are not UTF-8 are damage, and left out.
pub async fn read<C: redis::aio::ConnectionLike>(
    con: &mut C,
    leases: &[String],
) -> crate::Result<Vec<Vec<String>>> {
    if leases.is_empty() {
        return Ok(vec![]);
    }
    let mut pipe = redis::pipe();
    for l in leases {
        pipe.cmd("LRANGE").arg(l).arg(0).arg(-1);
    }
    let lists: Vec<Vec<Vec<u8>>> = match pipe.query_async(con).await {
        Ok(v) => v,
        Err(e) if e.code() == Some("WRONGTYPE") => {
            let mut out = Vec::with_capacity(leases.len());
            for l in leases {
                out.push(read_one(con, l).await?);
            }
            out
        }
        Err(e) => return Err(e.into()),
    };
    Ok(lists
        .into_iter()
        .map(|items| {
            items
                .into_iter()
                .filter_map(|b| String::from_utf8(b).ok())
                .collect()
        })
        .collect())
}

/// One lease key's items, whichever of the two shapes it has.
async fn read_one<C: redis::aio::ConnectionLike>(
    con: &mut C,
    lease: &str,
) -> crate::Result<Vec<Vec<u8>>> {
    let kind: String = redis::cmd("TYPE").arg(lease).query_async(con).await?;
    if kind == "string" {
        let text: Option<String> = redis::cmd("GET").arg(lease).query_async(con).await?;
        return Ok(text
            .unwrap_or_default()
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect());
    }
    Ok(redis::cmd("LRANGE")
        .arg(lease)
        .arg(0)
        .arg(-1)
        .query_async(con)
        .await
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;

    const ID: &str = "01935c1e-7f00-7000-8000-000000000001";

    #[test]
    fn any_key_survives_the_round_trip() {
        for ckey in ["", "a b", "x\n1 other key", "nul\0byte", "wake k"] {
            let entry = Entry::job(ID, ckey);
            assert_eq!(parse_item(&item(7, &entry)), Some((7, entry.as_str())));
        }
        for bad in [
            "",
            "7",
            "x 01935c1e",
            "7 short",
            " 7 x",
            "99999999999 01935c1e-7f00-7000-8000-000000000001",
        ] {
            assert_eq!(parse_item(bad), None, "{bad:?}");
        }
    }
}
