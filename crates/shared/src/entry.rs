//! Queue entries: what the ready list, the delayed set and the leases hold.
//! An entry is the 36-character job id, then a space and the job's concurrency
//! key when it has one, so the scripts can name the key's Redis keys without
//! reading the job. `wake <K>` entries in the delayed set ask for key K's
//! waiters to be looked at again.

/// The length of a job id (a UUID's text), which every job's entry starts with.
pub const ID_LEN: usize = 36;

/// A queue entry, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A job's entry: its id and its concurrency key.
    Job {
        /// The job's id.
        id: String,
        /// Its concurrency key ("" for none).
        ckey: String,
    },
    /// `wake <K>`: look at key K's waiters again.
    Wake {
        /// The concurrency key whose waiters to look at.
        ckey: String,
    },
}

impl Entry {
    /// The entry of job `id` with concurrency key `ckey` ("" for none).
    pub fn job(id: &str, ckey: &str) -> String {
        if ckey.is_empty() {
            id.to_string()
        } else {
            format!("{id} {ckey}")
        }
    }

    /// Reads an entry; `None` when it is neither a wake nor a job's.
    pub fn parse(raw: &str) -> Option<Entry> {
        if let Some(ckey) = raw.strip_prefix("wake ") {
            return Some(Entry::Wake {
                ckey: ckey.to_string(),
            });
        }
        let id = raw.get(..ID_LEN)?;
        let ckey = match raw.get(ID_LEN..) {
            Some("") => "",
            Some(rest) => rest.strip_prefix(' ')?,
            None => return None,
        };
        Some(Entry::Job {
            id: id.to_string(),
            ckey: ckey.to_string(),
        })
    }

    /// The concurrency key of a job's entry, without copying ("" for none).
    pub fn ckey_of(raw: &str) -> &str {
        raw.get(ID_LEN + 1..).unwrap_or("")
    }

    /// The job id, if the entry is a job's.
    pub fn id(&self) -> Option<&str> {
        match self {
            Entry::Job { id, .. } => Some(id),
            Entry::Wake { .. } => None,
        }
    }

    /// The entry's concurrency key, a job's or a wake's ("" for none).
    pub fn ckey(&self) -> &str {
        match self {
            Entry::Job { ckey, .. } | Entry::Wake { ckey } => ckey,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01935c1e-7f00-7000-8000-000000000001";

    #[test]
    fn round_trips() {
        let raw = Entry::job(ID, "default/script/f/a b");
        assert_eq!(
            Entry::parse(&raw),
            Some(Entry::Job {
                id: ID.into(),
                ckey: "default/script/f/a b".into()
            })
        );
        assert_eq!(
            Entry::parse(ID),
            Some(Entry::Job {
                id: ID.into(),
                ckey: String::new()
            })
        );
        assert_eq!(
            Entry::parse("wake k"),
            Some(Entry::Wake { ckey: "k".into() })
        );
        assert_eq!(Entry::parse("short"), None);
        assert_eq!(Entry::parse(&format!("{ID}x")), None);
    }
}
