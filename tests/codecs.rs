//! Each stored format has one codec in Rust and one helper in Lua
//! (records.lua). Here each side reads what the other wrote, through EVAL on
//! a real Redis, for values no validation would let through: a key with a
//! newline, NUL, spaces, the text of another entry, 4 KB. And for damaged
//! states both sides must agree on what is malformed.

use sluice_shared::entry::Entry;
use sluice_shared::key_index;
use sluice_shared::lease;
use sluice_shared::scripts::{held_lib, records_lib};
use sluice_shared::state::State;
use sluice_tests::*;

const ID: &str = "01935c1e-7f00-7000-8000-000000000001";

fn nasty_keys() -> Vec<String> {
    vec![
        String::new(),
        "a b".into(),
        "acme\nbeta".into(),
        format!("x\n1 {ID} other/key"),
        "nul\0byte".into(),
        "wake k".into(),
        " ".into(),
        "\r\n\t\x0b\x0c".into(),
        "%d+ (.*) $".into(),
        "ü/日本".into(),
        "k".repeat(4096),
    ]
}

/// A Redis of the test's own, and a connection to it.
fn redis() -> (RedisServer, redis::Connection) {
    let server = RedisServer::start();
    let con = redis::Client::open(server.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    (server, con)
}

fn eval<T: redis::FromRedisValue>(con: &mut redis::Connection, body: &str, args: &[Vec<u8>]) -> T {
    redis::cmd("EVAL")
        .arg(format!("{}\n{body}", records_lib()))
        .arg(0)
        .arg(args)
        .query(con)
        .unwrap()
}

#[test]
fn entries_round_trip_both_ways() {
    let (_redis, mut con) = redis();
    for key in nasty_keys() {
        // Rust writes, Lua reads.
        let entry = Entry::job(ID, &key);
        let (id, ckey): (Vec<u8>, Vec<u8>) = eval(
            &mut con,
            "return { entry_id(ARGV[1]), entry_ckey(ARGV[1]) }",
            &[entry.clone().into_bytes()],
        );
        assert_eq!(
            (id, ckey),
            (ID.as_bytes().to_vec(), key.as_bytes().to_vec()),
            "{key:?}"
        );
        // Lua writes, Rust reads.
        let written: Vec<u8> = eval(
            &mut con,
            "return make_entry(ARGV[1], ARGV[2])",
            &[ID.into(), key.clone().into_bytes()],
        );
        let written = String::from_utf8(written).unwrap();
        assert_eq!(
            Entry::parse(&written),
            Some(Entry::Job {
                id: ID.into(),
                ckey: key.clone()
            })
        );
        assert_eq!(Entry::ckey_of(&written), key);
    }
}

#[test]
fn key_index_members_agree_and_each_falls_in_its_own_keys_range_only() {
    let (_redis, mut con) = redis();
    let keys: Vec<String> = nasty_keys()
        .into_iter()
        .chain(["12:ab", "1", "a[b(c;d", "a\"b\\c"].map(String::from))
        .collect();
    let created = 1_795_640_766_154_i64;
    for key in &keys {
        // Lua writes (enqueue, and purge rebuilding it), Rust reads.
        let lua: Vec<u8> = eval(
            &mut con,
            "return key_index_member(ARGV[1], ARGV[2], ARGV[3])",
            &[
                key.clone().into_bytes(),
                created.to_string().into_bytes(),
                ID.into(),
            ],
        );
        let member = key_index::member(key, created, ID);
        assert_eq!(String::from_utf8(lua).unwrap(), member, "{key:?}");
        assert_eq!(key_index::id_of(&member), Some(ID), "{key:?}");
        for other in &keys {
            let (min, max) = key_index::bounds(other);
            let inside = member.as_str() >= &min[1..] && member.as_str() < &max[1..];
            assert_eq!(inside, other == key, "{key:?} in the range of {other:?}");
        }
    }
}

#[test]
fn lease_items_round_trip_both_ways() {
    let (_redis, mut con) = redis();
    for key in nasty_keys() {
        let entry = Entry::job(ID, &key);
        // Lua writes (as admit.lua does), Rust reads.
        let item: Vec<u8> = eval(
            &mut con,
            "return lease_item(tonumber(ARGV[1]), ARGV[2])",
            &[b"12".to_vec(), entry.clone().into_bytes()],
        );
        let item = String::from_utf8(item).unwrap();
        assert_eq!(
            lease::parse_item(&item),
            Some((12, entry.as_str())),
            "{key:?}"
        );
        // Rust writes, Lua reads.
        let (attempt, back): (i64, Vec<u8>) = eval(
            &mut con,
            "local a, e = parse_lease_item(ARGV[1]); return { a, e }",
            &[lease::item(3, &entry).into_bytes()],
        );
        assert_eq!((attempt, back), (3, entry.as_bytes().to_vec()), "{key:?}");
    }
    // Damaged items: both sides refuse the same ones.
    for bad in ["", "7", "x 1", "7 short", " 7 x", "1234567890 0", "7\n0"] {
        let lua: Option<i64> = eval(
            &mut con,
            "local a = parse_lease_item(ARGV[1]); if a then return a end return nil",
            &[bad.as_bytes().to_vec()],
        );
        assert_eq!(lua.is_some(), lease::parse_item(bad).is_some(), "{bad:?}");
    }
}

/// Lua's view of a state, as (status, attempt, at, ready, started, drive,
/// cancel, dirty), "" where absent; `None` when parse_state says nil.
fn lua_state(con: &mut redis::Connection, raw: &str) -> Option<Vec<String>> {
    let v: Option<Vec<String>> = eval(
        con,
        r#"local st = parse_state(ARGV[1])
if not st then return nil end
local w = st.words
local function s(x) if x == nil then return '' end return tostring(x) end
return { st.status, s(st.attempt), s(st.at), s(w.ready), s(w.started), s(w.drive),
  s(w.throttled), s(w.cancel), s(w.dirty) }"#,
        &[raw.as_bytes().to_vec()],
    );
    v
}

fn rust_state(raw: &str) -> Option<Vec<String>> {
    let st = State::parse(raw)?;
    let s = |x: Option<i64>| x.map(|v| v.to_string()).unwrap_or_default();
    Some(vec![
        st.status,
        st.attempt.to_string(),
        st.since.to_string(),
        s(st.ready),
        s(st.started),
        st.drive.unwrap_or_default(),
        s(st.throttled),
        // Lua's raw values: true, or nothing.
        if st.cancel {
            "true".into()
        } else {
            String::new()
        },
        if st.dirty {
            "true".into()
        } else {
            String::new()
        },
    ])
}

#[test]
fn states_read_the_same_on_both_sides_damaged_or_not() {
    let (_redis, mut con) = redis();
    let full = State {
        status: "running".into(),
        attempt: 3,
        since: 1_700_000_000_123,
        ready: Some(1_700_000_000_000),
        started: Some(1_700_000_000_100),
        drive: Some("parked".into()),
        throttled: Some(2),
        cancel: true,
        dirty: true,
    };
    let cases = [
        full.format(),
        "queued 0 1700000000000".into(),
        "succeeded 2 5 started=4".into(),
        "queued 0 12abc\tcancel".into(),
        "running 1 5 drive=a=b".into(),
        "running 1 5 cancel=no dirty=0 drive".into(),
        "running 1 5 ready=abc started=-4 ready=7".into(),
        "running 1 5 cancelx ready= drive=".into(),
        "waiting 3 5 throttled=2 throttled=x".into(),
        String::new(),
        "running".into(),
        "running 1".into(),
        "running x 5".into(),
        "run-ning 1 5".into(),
        " running 1 5".into(),
        "running 1234567890 5".into(),
        "running 1 12345678901234567".into(),
        "running\n1 5".into(),
        "r\0 1 5".into(),
    ];
    for raw in &cases {
        assert_eq!(lua_state(&mut con, raw), rust_state(raw), "{raw:?}");
    }
    // Lua writes (set_state), Rust reads.
    let written: String = eval(
        &mut con,
        "set_state('x', 'running', 3, '1700000000123', { ready = '1700000000000', started = '1700000000100', drive = 'parked', throttled = 2, cancel = true, dirty = true }) return state_cache['x']",
        &[],
    );
    assert_eq!(State::parse(&written), Some(full.clone()));
    assert_eq!(written, full.format());
}

/// The running counts' fields (held.lua): every form the scripts write reads
/// back as written, and a damaged one reads as a key with keys of its own and
/// windows running, whose jobs take the slow path that repairs it: never as
/// a free key, which would admit past its limit.
#[test]
fn running_counts_read_back_and_damage_is_never_free() {
    let (_redis, mut con) = redis();
    let mut read = |v: &str| -> (i64, i64, i64) {
        eval(
            &mut con,
            &format!(
                "{}\nparse_held('k', ARGV[1])\nreturn {{ HN.k, HW.k and 1 or 0, HS.k and 1 or 0 }}",
                held_lib()
            ),
            &[v.as_bytes().to_vec()],
        )
    };
    for (v, want) in [
        ("3", (3, 0, 0)),
        ("3 s", (3, 0, 1)),
        ("2 w", (2, 1, 0)),
        ("2 w s", (2, 1, 1)),
        ("0 s", (0, 0, 1)),
    ] {
        assert_eq!(read(v), want, "{v:?}");
    }
    for damaged in [
        "", "x", "3 s w", "3  s", "-1", "3 s\n", "3\0", "1 S", " 3", "3 ws",
    ] {
        assert_eq!(read(damaged), (0, 1, 1), "{damaged:?}");
    }
}

/// Reading more fields than one Lua unpack() takes (7,999 values) reads them
/// in slices, in order: a worker with a large room and several tags reads
/// that many specs in one admission.
#[test]
fn many_fields_read_in_one_call_come_back_in_order() {
    let (_redis, mut con) = redis();
    let got: (i64, String, String) = redis::cmd("EVAL")
        .arg(format!(
            "{}\n{}",
            records_lib(),
            r#"
            local fields = {}
            for i = 1, 9000 do fields[i] = 'f' .. i end
            redis.call('HSET', KEYS[1], 'f1', 'first', 'f9000', 'last')
            local v = hmget_all(KEYS[1], fields)
            return { #v, v[1], v[9000] }
            "#
        ))
        .arg(1)
        .arg("h")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, (9000, "first".to_string(), "last".to_string()));
}
