//! Partitions: a namespace split into P parts, each under a hash tag of
//! its own, so that a Redis Cluster spreads them over its primaries.
//!
//! - A keyed job lives in its key's partition (a hash of the key), so a
//!   key's slots, waiters, count and jobs share one slot and its limit
//!   stays exact and atomic.
//! - A job without a key goes to the partition of its idempotency key if it
//!   has one (a repeated enqueue must meet the first), else the producer
//!   deals jobs out in turn.
//! - A flow's steps live in their run's partition (steps with a key of
//!   their own are refused with P > 1, see config.rs).
//! - A job id tells its partition ([`JobId::partition_of`]).
//!
//! With P = 1 (the default) the one partition's tag is the prefix itself,
//! `{prefix}`, as before partitions existed. With P > 1, partition i's tag
//! is `prefix#i`, or `prefix#i.n` for the smallest n that puts it in the
//! i-th of P equal ranges of the 16384 cluster slots: a cluster whose
//! primaries own equal contiguous ranges (what `redis-cli --cluster create`
//! and managed services set up) then holds equal shares of partitions.
//!
//! P is recorded in Redis (`{prefix}:partitions`, partitions.lua) by the
//! first process; a process whose config says otherwise refuses to start.

use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::ConnectionLike;

use crate::error::{Error, Result};
use crate::id::JobId;
use crate::keys::Keys;

/// Most partitions a namespace can have: a job id's last byte tells its
/// partition.
pub const MAX_PARTITIONS: usize = 256;

const SLOTS: u32 = 16384;

/// The partitions of one namespace, and the producer's turn for jobs
/// without a key.
#[derive(Debug)]
pub struct Partitions {
    prefix: String,
    keys: Vec<Keys>,
    next: AtomicUsize,
}

impl Partitions {
    /// The `count` partitions of namespace `prefix` (1 to [`MAX_PARTITIONS`]).
    pub fn new(prefix: &str, count: usize) -> Partitions {
        let count = count.clamp(1, MAX_PARTITIONS);
        let keys = if count == 1 {
            vec![Keys::new(prefix)]
        } else {
            (0..count)
                .map(|i| Keys::partition(&tag_of(prefix, i, count), i, count))
                .collect()
        };
        // Each producer starts its turn at a random partition: short-lived
        // ones (a `sluice enqueue` each) would otherwise all fill the first.
        let start = uuid::Uuid::new_v4().as_u128() as usize;
        Partitions {
            prefix: prefix.to_string(),
            keys,
            next: AtomicUsize::new(start),
        }
    }

    /// How many partitions there are.
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// Every partition's keys, partition 0 first.
    pub fn all(&self) -> &[Keys] {
        &self.keys
    }

    /// The partition of job `id`.
    pub fn of_id(&self, id: &str) -> usize {
        JobId::partition_of(id, self.count())
    }

    /// The keys of job `id`'s partition.
    pub fn by_id(&self, id: &str) -> &Keys {
        &self.keys[self.of_id(id)]
    }

    /// The partition of concurrency key `ckey` (FNV-1a, stable across
    /// processes and versions).
    pub fn of_key(&self, ckey: &str) -> usize {
        key_partition(ckey, self.count())
    }

    /// The keys of concurrency key `ckey`'s partition.
    pub fn by_key(&self, ckey: &str) -> &Keys {
        &self.keys[self.of_key(ckey)]
    }

    /// The partition for a new job: its key's, else its idempotency key's,
    /// else its parent flow's, else the next in turn.
    pub fn place(&self, ckey: &str, idempotency_key: Option<&str>, parent: &str) -> usize {
        if self.count() == 1 {
            0
        } else if !ckey.is_empty() {
            self.of_key(ckey)
        } else if let Some(k) = idempotency_key {
            (fnv1a(k.as_bytes()) % self.count() as u64) as usize
        } else if !parent.is_empty() {
            self.of_id(parent)
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % self.count()
        }
    }

    /// A new id for a job of partition `partition`. With one partition, a
    /// plain UUIDv7.
    pub fn new_id(&self, partition: usize) -> JobId {
        if self.count() == 1 {
            JobId::new()
        } else {
            JobId::in_partition(partition)
        }
    }

    /// Refuses a count that differs from the recorded one, naming both; with
    /// `record`, records this count if none is. A producer records it with
    /// its first enqueue, so that connecting (or a refused enqueue) writes
    /// nothing; a worker at its start.
    pub async fn check<C: ConnectionLike>(&self, con: &mut C, record: bool) -> Result<()> {
        let recorded: i64 = crate::scripts::scripts()
            .partitions
            .call()
            .key(Keys::partition_count(&self.prefix))
            .key(Keys::new(&self.prefix).stats())
            .arg(self.count())
            .arg(if record { "record" } else { "read" })
            .query(con)
            .await?;
        if recorded != self.count() as i64 {
            return Err(Error::Config(format!(
                "partitions: the config says {}, but namespace {:?} was created with {recorded}; a namespace keeps its partition count (drain it and use a new prefix to change it)",
                self.count(),
                self.prefix
            )));
        }
        Ok(())
    }
}

/// The partition of concurrency key `ckey` out of `count`.
pub fn key_partition(ckey: &str, count: usize) -> usize {
    (fnv1a(ckey.as_bytes()) % count.max(1) as u64) as usize
}

/// Partition i's hash tag, out of `count` > 1.
fn tag_of(prefix: &str, i: usize, count: usize) -> String {
    let lo = (i as u32 * SLOTS) / count as u32;
    let hi = ((i as u32 + 1) * SLOTS) / count as u32;
    let plain = format!("{prefix}#{i}");
    if (lo..hi).contains(&slot(&plain)) {
        return plain;
    }
    // Each try lands in the range with chance 1/count: a few hundred tries
    // at most for any count, once per process.
    (1u32..)
        .map(|n| format!("{prefix}#{i}.{n}"))
        .find(|t| (lo..hi).contains(&slot(t)))
        .expect("some suffix lands in every range")
}

/// The cluster slot of a hash tag's content (CRC16/XMODEM mod 16384).
pub fn slot(tag: &str) -> u32 {
    let mut crc: u16 = 0;
    for &b in tag.as_bytes() {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc as u32 % SLOTS
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_is_the_namespace_as_before() {
        let p = Partitions::new("sluice", 1);
        assert_eq!(p.all()[0].jobs(), "{sluice}:jobs");
        assert_eq!(p.place("k", None, ""), 0);
        assert_eq!(p.of_id(&p.new_id(0)), 0);
    }

    #[test]
    fn partitions_spread_over_equal_slot_ranges() {
        // The cluster's own slot function agrees with ours.
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS);
        for tag in ["sluice", "sluice#3", "a", "t-0193"] {
            assert_eq!(
                redis::cluster_routing::Slot::new(slot(tag) as u16),
                Some(redis::cluster_routing::Slot::for_key(tag))
            );
        }
        for count in [2, 3, 5, 16, 256] {
            let p = Partitions::new("sluice", count);
            for (i, k) in p.all().iter().enumerate() {
                let tag = k.jobs();
                let tag = &tag[1..tag.find('}').unwrap()];
                let s = slot(tag);
                assert!(s * count as u32 / SLOTS == i as u32, "{tag} slot {s}");
            }
        }
    }

    #[test]
    fn ids_and_keys_find_their_partition() {
        let p = Partitions::new("sluice", 16);
        for i in 0..16 {
            let id = p.new_id(i);
            assert_eq!(p.of_id(&id), i, "{id}");
            assert!(JobId::parse(&id).is_ok());
        }
        let k = p.of_key("acme/crm/42");
        assert_eq!(p.place("acme/crm/42", Some("x"), ""), k);
        assert_eq!(p.place("", Some("x"), ""), p.place("", Some("x"), "zzz"));
        let parent = p.new_id(5);
        assert_eq!(p.place("", None, &parent), 5);
        // Jobs without a key are dealt out in turn.
        let dealt: std::collections::BTreeSet<usize> =
            (0..16).map(|_| p.place("", None, "")).collect();
        assert_eq!(dealt.len(), 16);
        // Garbage finds some partition, never a panic.
        for junk in ["", "x", "zz", "\u{1f}\u{1f}", "ééé"] {
            assert!(p.of_id(junk) < 16);
        }
    }
}
