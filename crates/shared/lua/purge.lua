-- purge.lua: remove finished jobs past retention, with their index entries.
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- then, per job i: KEYS[12+2i-1] idx:key:K of its concurrency key, KEYS[12+2i]
--          its flow state (for a flow run; any names otherwise)
-- ARGV[1]  cutoff: finished jobs created at or before this Unix ms go
-- ARGV[2]  keep: at most this many finished jobs stay, the newest
-- ARGV[2+i] the i-th job id, oldest first by creation
-- Returns: how many jobs were removed.
--
-- Each id is checked again here: one not finished (in no idx:status:S) or
-- within both limits is left alone.

local cutoff, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local over = -keep
for _, idx in pairs(IDX) do over = over + redis.call('ZCARD', idx) end
local removed = {}
for i = 1, #ARGV - 2 do
  local id = ARGV[2 + i]
  for _, idx in pairs(IDX) do
    local created = tonumber(redis.call('ZSCORE', idx, id))
    if created ~= nil and (created <= cutoff or over > 0) then
      redis.call('ZREM', idx, id)
      redis.call('ZREM', KEYS[NS + 2 * i - 1], id)
      redis.call('DEL', KEYS[NS + 2 * i])
      removed[#removed + 1] = id
      over = over - 1
    end
  end
end
if #removed > 0 then
  redis.call('HDEL', JOBS, unpack(removed))
  redis.call('HDEL', STATE, unpack(removed))
  redis.call('HDEL', RESULTS, unpack(removed))
end
return #removed
