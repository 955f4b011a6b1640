-- enqueue.lua: store a batch of new jobs and make them ready (or scheduled).
--
-- KEYS[1]  ready list
-- KEYS[2]  delayed sorted set
-- KEYS[3]  marker list (wakes idle workers)
-- KEYS[4]  stats hash
-- KEYS[4+i] job hash of the i-th job
-- ARGV[1]  F, the number of field/value pairs given for every job
-- then, per job: delay_ms, entry ("<id>" or "<id> <concurrency key>"),
--          and F field/value pairs for the job hash
-- Returns: the number of jobs stored.
--
-- Every job of the batch is written by this one call, so a batch lands whole.

local now = now_ms()
local f = tonumber(ARGV[1])
local per_job = 2 + 2 * f
local ready = {}
local n = #KEYS - 4
for i = 1, n do
  local base = 1 + (i - 1) * per_job
  local delay_ms = tonumber(ARGV[base + 1])
  local entry = ARGV[base + 2]
  local fields = {}
  for j = base + 3, base + 2 + 2 * f do fields[#fields + 1] = ARGV[j] end
  local status = 'queued'
  if delay_ms > 0 then status = 'scheduled' end
  redis.call('HSET', KEYS[4 + i], 'status', status, 'created_at', now,
    'ready_at', now + delay_ms, 'attempt', 0, unpack(fields))
  if delay_ms > 0 then
    redis.call('ZADD', KEYS[2], now + delay_ms, entry)
  else
    ready[#ready + 1] = entry
  end
end
if #ready > 0 then redis.call('RPUSH', KEYS[1], unpack(ready)) end
redis.call('HINCRBY', KEYS[4], 'active', n)
if redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
return n
