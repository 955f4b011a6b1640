-- pause.lua: pause a concurrency key until a moment, or end its pause
-- (`sluice pause KEY --for-s N`, `sluice resume KEY`). While a key is
-- paused, none of its jobs is admitted; running ones are not touched, and
-- other keys go on. The pause is a member of the key's slots set (see
-- paused_until in slots.lua).
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+1]  slots:K
-- KEYS[NS+2]  wait:K
-- ARGV[1]  K, the concurrency key
-- ARGV[2]  how long to pause, in ms from now (Redis time); 0 ends the pause
-- Returns: the Unix ms the pause ends, or 0 when it was ended; the error
--   STALETAGS (nothing written) when the caller's view of the tags registry
--   is out of date.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now = now_ms()
local slots, wait, ckey = KEYS[NS + 1], KEYS[NS + 2], ARGV[1]
local ms = tonumber(ARGV[2])
note_heads()
touch_key(ckey, slots, wait)
local until_ = 0
if ms > 0 then
  until_ = now + ms
  -- A pause set by hand replaces any other; slots reserved for waiters
  -- come back (see take_back_reservations).
  redis.call('ZADD', slots, until_, PAUSE)
  take_back_reservations(slots, wait, ckey)
  -- Its waiters are looked at again when it ends.
  wake_key_at(wait, ckey, until_)
else
  redis.call('ZREM', slots, PAUSE)
  expire_slots(slots, now)
  settle(slots, wait, ckey, now)
end
bound_slots(slots)
flush_held()
flush_records()
flush_queues()
return until_
