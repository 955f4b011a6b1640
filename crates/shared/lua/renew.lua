-- renew.lua: extend the leases of a worker's running executions.
--
-- KEYS[1]  leases sorted set
-- KEYS[1+i] job hash of the i-th execution
-- ARGV[1]  lease length in ms
-- ARGV[2i], ARGV[2i+1]  entry and attempt of the i-th execution
-- Returns: { lost, cancel }: entries whose attempt is no longer theirs (the
--   worker must stop them and not report them), and entries whose job was
--   asked to cancel (the worker stops them and reports them cancelled).

local now = now_ms()
local lease_ms = tonumber(ARGV[1])
local lost, cancel = {}, {}
for i = 1, #KEYS - 1 do
  local entry, attempt = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  local f = redis.call('HMGET', KEYS[1 + i], 'status', 'attempt', 'cancel')
  if f[1] == 'running' and tonumber(f[2]) == attempt then
    redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, entry)
    if f[3] == '1' then cancel[#cancel + 1] = entry end
  else
    lost[#lost + 1] = entry
  end
end
return { lost, cancel }
