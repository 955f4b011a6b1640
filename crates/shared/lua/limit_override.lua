-- limit_override.lua: set or remove the limit of a concurrency key at run
-- time (`sluice limits set KEY --max N --window-s W`, `limits unset KEY`).
-- It overrides the limit stamped on every job of the key, waiting or
-- future, until removed (see override_of in slots.lua). Lowering it never
-- stops a running job; raising it hands free slots to waiters at once.
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- KEYS[13]  slots:K
-- KEYS[14]  wait:K
-- ARGV[1]  K, the concurrency key
-- ARGV[2]  max (0 removes the override)
-- ARGV[3]  window in ms
-- Returns: 1

local now = now_ms()
local slots, wait, ckey = KEYS[NS + 1], KEYS[NS + 2], ARGV[1]
local head_before = delayed_head(DELAYED)
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', LIMITS, OVERRIDE_MARK .. ckey, ARGV[2] .. ' ' .. ARGV[3])
else
  redis.call('HDEL', LIMITS, OVERRIDE_MARK .. ckey)
end
-- Reservations made under the old limit are made again under the new one.
take_back_reservations(slots, wait, DELAYED, ckey)
expire_slots(slots, now)
settle(slots, wait, DELAYED, ckey, now)
bound_slots(slots)
flush_records()
wake_if_earlier(DELAYED, MARKER, head_before)
return 1
