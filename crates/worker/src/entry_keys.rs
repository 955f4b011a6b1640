//! The per-entry KEYS that ack.lua and recover.lua declare after the
//! namespace's.

use sluice_shared::entry::Entry;
use sluice_shared::scripts::Invocation;
use sluice_shared::Keys;

/// The entry's key's slots and wait list, then the state hash of the flow
/// `parent` ("" when the job is no flow's step); names an entry does not use
/// are passed all the same, so that every key a script touches is declared.
pub fn entry_keys(keys: &Keys, call: &mut Invocation, entry: &str, parent: &str) {
    let ckey = Entry::parse(entry)
        .map(|e| e.ckey().to_string())
        .unwrap_or_default();
    call.key(keys.slots(&ckey))
        .key(keys.wait(&ckey))
        .key(keys.flow_state(parent));
}
