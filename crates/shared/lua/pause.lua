-- pause.lua: pause a concurrency key until a moment, or end its pause
-- (`sluice pause KEY --for-s N`, `sluice resume KEY`). While a key is
-- paused, none of its jobs is admitted; running ones are not touched, and
-- other keys go on. The pause is a member of the key's slots set (see
-- paused_until in slots.lua).
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- KEYS[13]  slots:K
-- KEYS[14]  wait:K
-- ARGV[1]  K, the concurrency key
-- ARGV[2]  how long to pause, in ms from now (Redis time); 0 ends the pause
-- Returns: the Unix ms the pause ends, or 0 when it was ended.

local now = now_ms()
local slots, wait, ckey = KEYS[NS + 1], KEYS[NS + 2], ARGV[1]
local ms = tonumber(ARGV[2])
local head_before = delayed_head(DELAYED)
local until_ = 0
if ms > 0 then
  until_ = now + ms
  -- A pause set by hand replaces any other; slots reserved for waiters
  -- come back (see take_back_reservations).
  redis.call('ZADD', slots, until_, PAUSE)
  take_back_reservations(slots, wait, DELAYED, ckey)
  -- Its waiters are looked at again when it ends.
  redis.call('ZADD', DELAYED, 'LT', until_, 'wake ' .. ckey)
else
  redis.call('ZREM', slots, PAUSE)
  expire_slots(slots, now)
  settle(slots, wait, DELAYED, ckey, now)
end
bound_slots(slots)
flush_records()
wake_if_earlier(DELAYED, MARKER, head_before)
return until_
