-- limit_state.lua: what `sluice limits` shows of one key, read at one moment
-- of Redis time. Read-only.
--
-- KEYS[1]  slots:K
-- KEYS[2]  wait:K
-- KEYS[3]  the running counts ({p}:running, see held.lua)
-- KEYS[4..]  the delayed sorted sets of every registered tag (queues.lua)
-- ARGV[1]  K, the concurrency key
-- Returns: { held, reserved, waiting_unknown, next_free_at, now, paused_until }
--   held: slots held now (running, reserved for a waiter, or in their window);
--   reserved: those reserved for waiting jobs due at a known moment;
--   waiting_unknown: jobs waiting for a running job to end (wait:K);
--   next_free_at: Unix ms at which the next held slot frees (a slot reserved
--   for a waiter frees to it at that waiter's moment in the delayed set), -1
--   if unknown (only running jobs hold the key) or none is held;
--   paused_until: Unix ms the key's pause ends, or -1 when it is not paused
--   (the pause member of the slots set is no slot, and not counted).

local now = now_ms()
local held = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local paused = tonumber(redis.call('ZSCORE', KEYS[1], 'pause'))
if paused and paused > now then held = held - 1 else paused = -1 end
local running = tonumber(string.match(redis.call('HGET', KEYS[3], ARGV[1]) or '', '^%d+'))
held = held + (running or 0)
local reserved = 0
local next_free = -1
local function sooner(t)
  if t ~= nil and (next_free < 0 or t < next_free) then next_free = t end
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '+inf', '+inf')) do
  if string.sub(m, -2) == '#r' then
    reserved = reserved + 1
    -- The waiter's entry is in its own tag's delayed set.
    local entry = string.sub(m, 1, 36) .. ' ' .. ARGV[1]
    for k = 4, #KEYS do
      local at = tonumber(redis.call('ZSCORE', KEYS[k], entry))
      if at then
        sooner(at)
        break
      end
    end
  end
end
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '(+inf', 'WITHSCORES', 'LIMIT', 0, 2)
for i = 1, #first, 2 do
  if first[i] ~= 'pause' then
    sooner(tonumber(first[i + 1]))
    break
  end
end
return { held, reserved, redis.call('LLEN', KEYS[2]), next_free, now, paused }
