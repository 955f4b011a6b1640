-- purge.lua: remove finished jobs past retention, with their index entries.
--
-- KEYS[1..4]  idx:done (scored by end, Unix ms), idx:status:succeeded, :failed, :cancelled
-- then, per job i: KEYS[4i+1] job hash, KEYS[4i+2] args string, KEYS[4i+3] idx:key:K,
--          KEYS[4i+4] flow state (for a flow run; any name otherwise)
-- ARGV[1]  cutoff: jobs that finished at or before this Unix ms go
-- ARGV[2]  keep: at most this many finished jobs stay, the newest
-- ARGV[2+i] the i-th job id, oldest first, as read from idx:done
-- Returns: how many jobs were removed.
--
-- Each id is checked again here: one not finished (no longer in idx:done) or
-- within both limits is left alone.

local cutoff, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local done = KEYS[1]
local over = redis.call('ZCARD', done) - keep
local removed = 0
for i = 1, #ARGV - 2 do
  local id = ARGV[2 + i]
  local ended = tonumber(redis.call('ZSCORE', done, id))
  if ended ~= nil and (ended <= cutoff or redis.call('ZRANK', done, id) < over) then
    redis.call('DEL', KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 4])
    for k = 1, 4 do redis.call('ZREM', KEYS[k], id) end
    redis.call('ZREM', KEYS[4 * i + 3], id)
    removed = removed + 1
  end
end
return removed
