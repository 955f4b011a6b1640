-- enqueue.lua: store a batch of new jobs and make them ready (or scheduled).
--
-- KEYS[1]  ready list
-- KEYS[2]  delayed sorted set
-- KEYS[3]  marker list (wakes idle workers)
-- KEYS[4]  stats hash
-- KEYS[5]  limits hash (concurrency key -> "max window_ms" last stamped)
-- KEYS[3i+3], KEYS[3i+4], KEYS[3i+5]  job hash, args string and idx:key:K of
--          the i-th job (the args string is written only for args over 48
--          bytes, the key index only for a job with a concurrency key)
-- ARGV, 14 per job from ARGV[14i-13]: see write_job in jobs.lua
-- Returns: the number of jobs stored.
--
-- Every job of the batch is written by this one call, so a batch lands whole.
-- Long args live in their own key so that the job hash keeps only short
-- values, which Redis stores compactly.

local now = now_ms()
local now_s = ms_str(now)
local ready_list = {}
local limits_seen = {}
local n = #ARGV / JOB_ARGS
for i = 1, n do
  local keys = { job = KEYS[3 * i + 3], args = KEYS[3 * i + 4], idx_key = KEYS[3 * i + 5], limits = KEYS[5] }
  local ready = write_job(keys, JOB_ARGS * (i - 1), now, now_s, limits_seen)
  if ready then ready_list[#ready_list + 1] = ready end
end
if #ready_list > 0 then redis.call('RPUSH', KEYS[1], unpack(ready_list)) end
redis.call('HINCRBY', KEYS[4], 'active', n)
if redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
return n
