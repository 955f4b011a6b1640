-- limit_state.lua: what `sluice limits` shows of one key, read at one moment
-- of Redis time. Read-only.
--
-- KEYS[1]  slots:K
-- KEYS[2]  wait:K
-- Returns: { held, reserved, waiting_unknown, next_free_at, now }
--   held: slots held now (running, reserved for a waiter, or in their window);
--   reserved: those reserved for waiting jobs due at a known moment;
--   waiting_unknown: jobs waiting for a running job to end (wait:K);
--   next_free_at: Unix ms at which the next held slot frees, -1 if unknown
--   (only running jobs) or none held.

local now = now_ms()
local held = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local reserved = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '+inf', '+inf')) do
  if string.sub(m, -2) == '#r' then reserved = reserved + 1 end
end
local next_free = -1
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '(+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if first[2] then next_free = tonumber(first[2]) end
return { held, reserved, redis.call('LLEN', KEYS[2]), next_free, now }
