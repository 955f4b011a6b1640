-- limit_state.lua: what `sluice limits` shows of one key, read at one moment
-- of Redis time. Read-only.
--
-- KEYS[1]  slots:K
-- KEYS[2]  wait:K
-- KEYS[3]  delayed sorted set
-- ARGV[1]  K, the concurrency key
-- Returns: { held, reserved, waiting_unknown, next_free_at, now }
--   held: slots held now (running, reserved for a waiter, or in their window);
--   reserved: those reserved for waiting jobs due at a known moment;
--   waiting_unknown: jobs waiting for a running job to end (wait:K);
--   next_free_at: Unix ms at which the next held slot frees (a slot reserved
--   for a waiter frees to it at that waiter's moment in the delayed set), -1
--   if unknown (only running jobs hold the key) or none is held.

local now = now_ms()
local held = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local reserved = 0
local next_free = -1
local function sooner(t)
  if t ~= nil and (next_free < 0 or t < next_free) then next_free = t end
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '+inf', '+inf')) do
  if string.sub(m, -2) == '#r' then
    reserved = reserved + 1
    sooner(tonumber(redis.call('ZSCORE', KEYS[3], string.sub(m, 1, 36) .. ' ' .. ARGV[1])))
  end
end
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '(+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if first[2] then sooner(tonumber(first[2])) end
return { held, reserved, redis.call('LLEN', KEYS[2]), next_free, now }
