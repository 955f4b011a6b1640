-- purge.lua: remove finished jobs past retention, with their index entries.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- then, per job i: KEYS[NS+2i-1] idx:key:K of its concurrency key (the
--          per-key set that namespaces written before the key index
--          have), KEYS[NS+2i] its flow state (for a flow run; any names
--          otherwise)
-- ARGV[1]  cutoff: jobs that finished at or before this Unix ms go
-- ARGV[2]  keep: at most this many finished jobs stay, the newest
-- ARGV[2+i] the i-th job's entry in its idx:status:S list, as stored
--          there (its id, then its key if it has one: finish in
--          slots.lua; an older version stored the bare id), oldest first
--          by the moment it finished
-- Returns: how many jobs were removed.
--
-- Each job is checked again here: one not finished, or within both limits,
-- is left alone. The entries come from the heads of the idx:status:S lists,
-- so LREM finds each one near where it starts looking.

local cutoff, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local over = -keep
for _, idx in pairs(IDX) do over = over + redis.call('LLEN', idx) end
local removed = {}
for i = 1, #ARGV - 2 do
  local entry = ARGV[2 + i]
  local id = entry_id(entry)
  local st = state_of(id)
  local idx = st and IDX[st.status]
  if idx and (tonumber(st.at) <= cutoff or over > 0) and redis.call('LREM', idx, 1, entry) == 1 then
    -- Jobs enqueued by older versions are in the key index (its member is
    -- rebuilt from the spec, as they wrote it) or, older still, in their
    -- key's own set.
    local spec = spec_of(id)
    if spec and type(spec.ckey) == 'string' and spec.ckey ~= '' then
      redis.call('ZREM', KEY_INDEX, key_index_member(spec.ckey, created_of(id, ''), id))
    end
    redis.call('ZREM', KEYS[NS + 2 * i - 1], id)
    redis.call('DEL', KEYS[NS + 2 * i])
    -- The counters count the jobs stored, so `sluice wait` (no ids) stops
    -- reporting a failure once retention has removed it.
    redis.call('HINCRBY', STATS, st.status, -1)
    removed[#removed + 1] = id
    over = over - 1
  end
end
if #removed > 0 then
  redis.call('HDEL', JOBS, unpack(removed))
  redis.call('HDEL', STATE, unpack(removed))
  redis.call('HDEL', RESULTS, unpack(removed))
end
return #removed
