-- records.lua: helpers prepended to every script, before slots.lua and
-- jobs.lua. It is not run on its own, so it has no KEYS or ARGV of its own.
--
-- Every script but limit_state.lua declares the namespace's keys first, in
-- this order (Keys::namespace in keys.rs):
--   KEYS[1]  jobs hash     id -> the job's spec, JSON, written once at enqueue
--   KEYS[2]  state hash    id -> "<status> <attempt> <since ms>[ <word>...]"
--   KEYS[3]  results hash  id -> result JSON (succeeded) or last error text
--   KEYS[4]  leases zset, KEYS[5] stats hash, KEYS[6] limits hash,
--   KEYS[7..9] idx:status:succeeded, :failed, :cancelled (lists of the
--   finished jobs' entries, make_entry below, in the order they finished)
--   KEYS[10] the tags registry (a set of every tag in use)
--   KEYS[11] the running counts per concurrency key (held.lua)
--   KEYS[12] the key index: a zset of keyed jobs, one lexical range per
--   key (key_index_member below), which versions before entries in the
--   status lists wrote at enqueue; now only read and purged
--   then, per registered tag, 3 keys: its ready list, its delayed zset and
--   its marker list (queues.lua)
-- so a script's own keys start at KEYS[NS + 1].
--
-- Jobs live in three namespace-wide hashes, not a key each, so that a batch
-- of jobs is read or written by one variadic command per hash instead of one
-- command per job; that is most of what a job costs Redis.
--
-- A state's words: "ready=<ms>" (waiting, running or finished: when it
-- became ready, if not at its creation), "started=<ms>" (finished jobs), "drive=active|parked|queued"
-- (a flow run's driver), "throttled=<n>" (attempts that ended in a
-- Retry-After: they do not count toward max_attempts), "cancel" (cancel
-- requested while running), "dirty" (a flow's step ended while its driver ran).
-- A keyed job enqueued ready now starts as "queued 0 <ms> limit=<max>/<window_ms>",
-- its stamped limit, for admit.lua's count-only path (state_limit in
-- held.lua); parse_state ignores that word, and the first set_state drops it.

local JOBS, STATE, RESULTS = KEYS[1], KEYS[2], KEYS[3]
local LEASES, STATS, LIMITS = KEYS[4], KEYS[5], KEYS[6]
local IDX = { succeeded = KEYS[7], failed = KEYS[8], cancelled = KEYS[9] }
local TAGS = KEYS[10]
-- This partition's hand-off hash ({p}:handoff, keys.rs), named from the
-- jobs hash: a script that declares it for a step's flow run (instead of the
-- run's state, which lives in another partition) gets the step's end
-- written there, to be carried over (handoff.rs).
local HANDOFF = JOBS and (string.sub(JOBS, 1, #JOBS - 4) .. 'handoff') or ''
local RUNNING = KEYS[11]
local KEY_INDEX = KEYS[12]
-- The queues of each tag declared (see queues.lua), and NS, the number of
-- namespace keys. A tag's keys are "<base>ready:<tag>", "<base>delayed:<tag>"
-- and "<base>marker:<tag>", so the tag is read off the first one's name; no
-- key a script declares after the namespace starts with "<base>ready:".
local QUEUES, QUEUE_TAGS = {}, {}
local NS = 12
do
  local ready_prefix = string.sub(KEYS[1] or '', 1, -5) .. 'ready:'
  local i = 13
  while KEYS[i] and string.sub(KEYS[i], 1, #ready_prefix) == ready_prefix do
    local tag = string.sub(KEYS[i], #ready_prefix + 1)
    QUEUES[tag] = { tag = tag, ready = KEYS[i], delayed = KEYS[i + 1], marker = KEYS[i + 2] }
    QUEUE_TAGS[#QUEUE_TAGS + 1] = tag
    i = i + 3
  end
  NS = i - 1
end

-- The key index's member for job `id` of key `ckey`, created at now_s (Unix
-- ms, 13 digits until the year 2286): the key's length in bytes and a colon,
-- the key, the moment, then the id. The length makes "<len>:<key>" a prefix
-- no other key's members start with, so one key's jobs are one lexical range
-- of the index, oldest first (key_index.rs reads it). Enqueue no longer
-- writes it (a write per keyed job was a tenth of a keyed job's cost): a
-- key's jobs are found from the entries in the queues, leases and status
-- lists, which name the key. Retention rebuilds members to remove those
-- older versions wrote. The length's text is kept per length: Lua turns a
-- number into text with sprintf's %.14g, a float format.
local KEY_LEN_PREFIX = {}
local function key_index_member(ckey, now_s, id)
  local n = #ckey
  local p = KEY_LEN_PREFIX[n]
  if p == nil then
    p = string.format('%d:', n)
    KEY_LEN_PREFIX[n] = p
  end
  return p .. ckey .. now_s .. id
end

-- States read or written by this call. Writes are gathered and sent as one
-- HSET by flush_records(), so a script reads its own writes from the cache.
local state_cache = {}
local state_writes = {}
local result_pairs = {}
-- Specs read by this call (false: none), see spec_of below.
local raw_specs = {}

-- HMGET of many fields, in slices: Lua's unpack() takes at most 7,999
-- values. Returns the values in the fields' order.
local function hmget_all(hash, fields)
  if #fields <= 4000 then return redis.call('HMGET', hash, unpack(fields)) end
  local out = {}
  for i = 1, #fields, 4000 do
    local v = redis.call('HMGET', hash, unpack(fields, i, math.min(i + 3999, #fields)))
    for j = 1, #v do out[i + j - 1] = v[j] end
  end
  return out
end

-- Reads the fields of many jobs in `hash` into `cache` with one HMGET.
-- (Numeric loops: ipairs costs a C call per step, and this runs per job.)
local function preload(cache, hash, ids)
  local want = {}
  for i = 1, #ids do
    local id = ids[i]
    if cache[id] == nil then want[#want + 1] = id end
  end
  if #want == 0 then return end
  local v = hmget_all(hash, want)
  for i = 1, #want do cache[want[i]] = v[i] or false end
end

local function load_states(ids)
  preload(state_cache, STATE, ids)
end

-- The stored formats' codecs, mirrored one for one in Rust (state.rs,
-- entry.rs, lease.rs); tests/codecs.rs runs each side on the other's output.

-- Queue entries: the 36-byte job id, then a space and the concurrency key
-- when the job has one. The id's length, not a separator, ends it, so any
-- byte may stand in the key.
local function entry_id(e)
  if #e == 36 then return e end
  return string.sub(e, 1, 36)
end
local function entry_ckey(e)
  return string.sub(e, 38)
end
local function make_entry(id, ckey)
  if ckey == nil or ckey == '' then return id end
  return id .. ' ' .. ckey
end

-- Lease items: one list item per execution, "<attempt> <entry>".
local function lease_item(attempt, entry)
  return attempt .. ' ' .. entry
end
local function parse_lease_item(s)
  local attempt, entry = string.match(s, '^(%d+) (.*)$')
  if not attempt or #attempt > 9 or #entry < 36 or (#entry > 36 and string.sub(entry, 37, 37) ~= ' ') then
    return nil
  end
  return tonumber(attempt), entry
end

-- { status, attempt, at, words } parsed from a state string, or nil. An
-- attempt of more than 9 digits or a time of more than 16 is malformed:
-- beyond them Lua's numbers and Rust's part ways.
local function parse_state(s)
  if not s then return nil end
  local status, attempt, at, rest = string.match(s, '^(%a+) (%d+) (%d+)(.*)$')
  if not status or #attempt > 9 or #at > 16 then return nil end
  -- Only the known words count, each in its one form (state.rs reads the
  -- same): ready=, started= and throttled= with digits, drive= with a
  -- value, and the bare flags cancel and dirty. Anything else is ignored.
  local words = {}
  for w in string.gmatch(rest, '%S+') do
    local k, v = string.match(w, '^([%a_]+)=(.*)$')
    if k == 'drive' then
      words.drive = v
    elseif (k == 'ready' or k == 'started' or k == 'throttled') and string.match(v, '^%d+$') and #v <= 16 then
      words[k] = v
    elseif not k and (w == 'cancel' or w == 'dirty') then
      words[w] = true
    end
  end
  return { status = status, attempt = tonumber(attempt), at = at, words = words }
end

-- A job's field in `hash`, read once per call through `cache` (false: none).
local function cached_get(cache, hash, id)
  local s = cache[id]
  if s == nil then
    s = redis.call('HGET', hash, id) or false
    cache[id] = s
  end
  return s
end

-- A job's parsed state, or nil (no state, or malformed).
local function state_of(id)
  return parse_state(cached_get(state_cache, STATE, id))
end

-- Sets a job's state string as it is (the hot paths build it themselves).
local function put_state(id, s)
  state_cache[id] = s
  state_writes[#state_writes + 1] = id
  state_writes[#state_writes + 1] = s
end

-- Words are written in this order, so that a state reads the same whoever wrote it.
local WORD_ORDER = { 'ready', 'started', 'drive', 'throttled', 'cancel', 'dirty' }

local function set_state(id, status, attempt, at, words)
  local s = status .. ' ' .. attempt .. ' ' .. at
  if words then
    for _, k in ipairs(WORD_ORDER) do
      local v = words[k]
      if v == true then s = s .. ' ' .. k elseif v then s = s .. ' ' .. k .. '=' .. v end
    end
  end
  put_state(id, s)
end

local function set_result(id, payload)
  result_pairs[#result_pairs + 1] = id
  result_pairs[#result_pairs + 1] = payload
end

-- HSET of field/value pairs, in slices: Lua's unpack() takes at most 7,999
-- values. Later writes of the same job come later, so they win.
local function hset_pairs(hash, pairs_)
  for i = 1, #pairs_, 2000 do
    redis.call('HSET', hash, unpack(pairs_, i, math.min(i + 1999, #pairs_)))
  end
end

local function flush_records()
  if #state_writes > 0 then
    hset_pairs(STATE, state_writes)
    state_writes = {}
  end
  if #result_pairs > 0 then
    hset_pairs(RESULTS, result_pairs)
    result_pairs = {}
  end
end

-- A spec is '{"created_at":<ms>,...,"args":<JSON>}' with args last: every
-- field a script needs comes before it, and a quote cannot appear unescaped
-- inside a JSON string, so the first ',"args":' ends the fields the scripts
-- read. Only that head is decoded: args are never decoded or re-encoded here.

local function raw_spec(id)
  return cached_get(raw_specs, JOBS, id) or nil
end

-- The decoded head of a job's spec (created_at, path, workspace, ckey, max,
-- window_ms, max_attempts, kind, parent, flow, step, iter), or nil when the
-- job has no spec or it is malformed.
local function spec_of(id)
  local s = raw_spec(id)
  if not s then return nil end
  local cut = string.find(s, ',"args":', 1, true)
  if not cut then return nil end
  local ok, t = pcall(cjson.decode, string.sub(s, 1, cut - 1) .. '}')
  if not ok or type(t) ~= 'table' then return nil end
  return t
end

-- Whether a spec is a flow run's, without decoding it: a job that is not a
-- script's names its kind right after created_at (NewJob::spec_tail).
local function is_flow_spec(s)
  return string.find(s, '^{"created_at":%d+,"kind":"flow"') ~= nil
end

-- A job's creation time (Unix ms, as written), read off the front of its
-- spec without decoding it; `default` when it has none.
local function created_of(id, default)
  local s = raw_spec(id)
  return (s and string.match(s, '^{"created_at":(%d+)')) or default
end
