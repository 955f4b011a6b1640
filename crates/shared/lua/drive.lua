-- drive.lua: a flow's driver hands over its plan: the steps to start now,
-- and its own state; then the flow parks, holding its slot but no worker,
-- until a step ends (see notify_parent in jobs.lua).
--
-- KEYS[1]  ready list
-- KEYS[2]  delayed sorted set
-- KEYS[3]  marker list
-- KEYS[4]  stats hash
-- KEYS[5]  limits hash
-- KEYS[6]  leases sorted set
-- KEYS[7]  the flow's job hash
-- KEYS[8]  the flow's state hash ({p}:flow:<id>)
-- then, per step job i: KEYS[3i+6] job hash, KEYS[3i+7] args string, KEYS[3i+8] idx:key:K
-- ARGV[1]  the flow's entry
-- ARGV[2]  the driver's attempt (fencing)
-- ARGV[3]  U, then U field/value pairs to set on the flow's job hash
-- then 14 values per step job, as enqueue.lua takes them
-- Returns: "parked", "requeued" (a step ended while driving: drive again),
--   "cancel" (cancel requested: nothing started) or "refused" (the attempt
--   is no longer this driver's).
--
-- Starting the steps and parking happen together, so a driver that dies
-- before this call leaves nothing half done: its replacement plans again.

local now = now_ms()
local now_s = ms_str(now)
local job, state, entry = KEYS[7], KEYS[8], ARGV[1]
local f = redis.call('HMGET', job, 'status', 'attempt', 'cancel', 'dirty')
if f[1] ~= 'running' or tonumber(f[2]) ~= tonumber(ARGV[2]) then return 'refused' end
if f[3] == '1' then return 'cancel' end

local u = tonumber(ARGV[3])
if u > 0 then
  local pairs_ = {}
  for i = 1, 2 * u do pairs_[i] = ARGV[3 + i] end
  redis.call('HSET', job, unpack(pairs_))
end

local first = 4 + 2 * u
local n = (#ARGV - first + 1) / JOB_ARGS
local ready_list, limits_seen = {}, {}
for i = 1, n do
  local a = first - 1 + JOB_ARGS * (i - 1)
  local keys = { job = KEYS[3 * i + 6], args = KEYS[3 * i + 7], idx_key = KEYS[3 * i + 8], limits = KEYS[5] }
  local ready = write_job(keys, a, now, now_s, limits_seen)
  if ready then ready_list[#ready_list + 1] = ready end
  redis.call('HSET', state, 'c:' .. string.sub(ARGV[a + 2], 1, 36), '1')
end
if n > 0 then
  redis.call('HINCRBY', state, 'active', n)
  redis.call('HINCRBY', KEYS[4], 'active', n)
end

redis.call('ZREM', KEYS[6], entry)
local outcome = 'parked'
if f[4] == '1' then
  redis.call('HSET', job, 'dirty', '0', 'drive', 'queued')
  ready_list[#ready_list + 1] = entry
  outcome = 'requeued'
else
  redis.call('HSET', job, 'drive', 'parked')
end
if #ready_list > 0 then
  redis.call('RPUSH', KEYS[1], unpack(ready_list))
  if redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
end
return outcome
