-- limit_override.lua: set or remove the limit of a concurrency key at run
-- time (`sluice limits set KEY --max N --window-s W`, `limits unset KEY`).
-- It overrides the limit stamped on every job of the key, waiting or
-- future, until removed (see override_of in slots.lua). Lowering it never
-- stops a running job; raising it hands free slots to waiters at once.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+1]  slots:K
-- KEYS[NS+2]  wait:K
-- ARGV[1]  K, the concurrency key
-- ARGV[2]  max (0 removes the override)
-- ARGV[3]  window in ms
-- Returns: 1; the error STALETAGS (nothing written) when the caller's view
--   of the tags registry is out of date.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now = now_ms()
local slots, wait, ckey = KEYS[NS + 1], KEYS[NS + 2], ARGV[1]
note_heads()
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', LIMITS, OVERRIDE_MARK .. ckey, ARGV[2] .. ' ' .. ARGV[3])
else
  redis.call('HDEL', LIMITS, OVERRIDE_MARK .. ckey)
end
-- Reservations made under the old limit are made again under the new one.
take_back_reservations(slots, wait, ckey)
expire_slots(slots, now)
settle(slots, wait, ckey, now)
bound_slots(slots)
flush_held()
flush_records()
flush_queues()
return 1
