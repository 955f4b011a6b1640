//! The per-entry KEYS that admit.lua, ack.lua and recover.lua declare.

use sluice_shared::entry::Entry;
use sluice_shared::scripts::Invocation;
use sluice_shared::Keys;

/// Adds KEYS `base`, then the per-entry keys and the entry as ARGV, per
/// entry; with `parents`, each entry's parent flow's keys follow its own.
pub fn per_entry_call(
    keys: &Keys,
    mut call: Invocation,
    base: &[String],
    entries: &[String],
    with_args: bool,
    parents: Option<&[String]>,
) -> Invocation {
    for k in base {
        call.key(k.clone());
    }
    for (i, e) in entries.iter().enumerate() {
        entry_keys(keys, &mut call, e, with_args);
        if let Some(p) = parents {
            parent_keys(keys, &mut call, &p[i]);
        }
        call.arg(e);
    }
    call
}

/// The job hash (and its args key, for admit), then the key's slots and wait
/// list; names that an entry does not use are passed all the same, so that
/// every key a script touches is declared.
pub fn entry_keys(keys: &Keys, call: &mut Invocation, entry: &str, with_args: bool) {
    let parsed = Entry::parse(entry);
    let id = parsed.as_ref().and_then(|e| e.id()).unwrap_or("-");
    let ckey = parsed.as_ref().map(|e| e.ckey()).unwrap_or("");
    call.key(keys.job(id));
    if with_args {
        call.key(keys.args(id));
    }
    call.key(keys.slots(ckey)).key(keys.wait(ckey));
}

/// The parent flow's job hash and state hash (any names when the job is no
/// flow's step).
pub fn parent_keys(keys: &Keys, call: &mut Invocation, parent: &str) {
    call.key(keys.job(parent)).key(keys.flow_state(parent));
}
