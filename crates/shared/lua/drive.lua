-- drive.lua: a flow's driver hands over its plan: the steps to start now,
-- and its own progress; then the flow parks, holding its slot but no worker,
-- until a step ends (see notify_parent in jobs.lua).
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+1]  the flow's state hash ({p}:flow:<id>)
-- KEYS[NS+1+i]  for the i-th step job, this partition's hand-off hash when
--              it lives in another partition: it is written there
--              (start:<id>, its 7 values as JSON) instead of enqueued; any
--              other key of this partition (the key index) when it lives here
-- ARGV[1]  the flow's entry
-- ARGV[2]  the driver's attempt (fencing)
-- ARGV[3]  U, then U field/value pairs to set on the flow's state hash
-- then 7 values per step job, as enqueue.lua takes them
-- Returns: "parked", "requeued" (a step ended while driving: drive again),
--   "cancel" (cancel requested: nothing started) or "refused" (the attempt
--   is no longer this driver's); the error STALETAGS (nothing written) when
--   the caller's view of the tags registry is out of date.
--
-- Starting the steps and parking happen together, so a driver that dies
-- before this call leaves nothing half done: its replacement plans again.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now = now_ms()
local now_s = ms_str(now)
local fstate, entry = KEYS[NS + 1], ARGV[1]
local id = entry_id(entry)
local st = state_of(id)
if not st or st.status ~= 'running' or st.attempt ~= tonumber(ARGV[2]) then return 'refused' end
-- The driver runs while the flow is active; parked or queued under this
-- same attempt, this call already ran (a cluster client may send a call
-- twice): its steps exist, and it answers as that run did, counting itself
-- in the stats hash (`repeated`), a write, so that a WAIT after it also
-- waits for that run's writes.
if st.words.drive ~= 'active' then
  redis.call('HINCRBY', STATS, 'repeated', 1)
  return 'parked'
end
if st.words.cancel then return 'cancel' end

local u = tonumber(ARGV[3])
local first = 4 + 2 * u
local n = (#ARGV - first + 1) / JOB_ARGS
local bad = unknown_tag(first - 1, JOB_ARGS, n)
if bad then return redis.error_reply('tag ' .. bad .. ' is not registered') end

local pairs_ = { 'entry', entry }
for i = 1, 2 * u do pairs_[2 + i] = ARGV[3 + i] end
redis.call('HSET', fstate, unpack(pairs_))

local acc = new_jobs(now_s)
for i = 1, n do
  local a = first - 1 + JOB_ARGS * (i - 1)
  if KEYS[NS + 1 + i] == HANDOFF then
    -- A step of another partition (its key's): it waits here, written with
    -- the run's parking, until it is enqueued there (handoff.rs).
    local values = {}
    for v = 1, JOB_ARGS do values[v] = ARGV[a + v] end
    redis.call('HSET', HANDOFF, 'start:' .. ARGV[a + 1], cjson.encode(values))
  else
    write_job(acc, a, now, now_s)
  end
  redis.call('HSET', fstate, 'c:' .. ARGV[a + 1], '1')
end
if n > 0 then redis.call('HINCRBY', fstate, 'active', n) end

local outcome = 'parked'
if st.words.dirty then
  st.words.dirty = nil
  st.words.drive = 'queued'
  local r = tag_list(acc.ready, tag_of(id))
  r[#r + 1] = entry
  outcome = 'requeued'
else
  st.words.drive = 'parked'
end
set_state(id, 'running', st.attempt, st.at, st.words)
flush_jobs(acc)
flush_records()
flush_queues()
return outcome
