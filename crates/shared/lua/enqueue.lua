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
-- ARGV, 9 per job from ARGV[9i-8]: delay_ms, entry ("<id>" or "<id> <K>"),
--   path, workspace, args (JSON), ckey, max, window_ms ("" for no limit),
--   max_attempts ("" for the default, 3)
-- Returns: the number of jobs stored.
--
-- Every job of the batch is written by this one call, so a batch lands whole.
-- Long args live in their own key so that the job hash keeps only short
-- values, which Redis stores compactly.

local now = now_ms()
local now_s = ms_str(now)
-- Args up to this size stay in the job hash; Redis keeps a hash compact only
-- while every value is at most 64 bytes (hash-max-listpack-value).
local INLINE_ARGS = 48
local ready_list, delayed = {}, KEYS[2]
local limits_seen = {}
local n = #ARGV / 9
for i = 1, n do
  local a = 9 * i - 9
  local delay_ms, entry = tonumber(ARGV[a + 1]), ARGV[a + 2]
  local job = KEYS[3 * i + 3]
  local status = 'queued'
  if delay_ms > 0 then status = 'scheduled' end
  if ARGV[a + 6] == '' then
    redis.call('HSET', job, 'path', ARGV[a + 3], 'workspace', ARGV[a + 4], 'status', status, 'created_at', now_s)
  else
    redis.call('HSET', job, 'path', ARGV[a + 3], 'workspace', ARGV[a + 4], 'status', status, 'created_at', now_s,
      'ckey', ARGV[a + 6], 'max', ARGV[a + 7], 'window_ms', ARGV[a + 8])
    redis.call('ZADD', KEYS[3 * i + 5], now_s, string.sub(entry, 1, 36))
    local stamp = ARGV[a + 7] .. ' ' .. ARGV[a + 8]
    if limits_seen[ARGV[a + 6]] ~= stamp then
      limits_seen[ARGV[a + 6]] = stamp
      redis.call('HSET', KEYS[5], ARGV[a + 6], stamp)
    end
  end
  if ARGV[a + 9] ~= '' then redis.call('HSET', job, 'max_attempts', ARGV[a + 9]) end
  local args = ARGV[a + 5]
  if #args <= INLINE_ARGS then
    redis.call('HSET', job, 'args', args)
  else
    redis.call('SET', KEYS[3 * i + 4], args)
  end
  if delay_ms > 0 then
    local at = ms_str(now + delay_ms)
    redis.call('HSET', job, 'ready_at', at)
    redis.call('ZADD', delayed, at, entry)
  else
    ready_list[#ready_list + 1] = entry
  end
end
if #ready_list > 0 then redis.call('RPUSH', KEYS[1], unpack(ready_list)) end
redis.call('HINCRBY', KEYS[4], 'active', n)
if redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
return n
