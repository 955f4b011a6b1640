-- prune_limits.lua: forget concurrency keys that hold nothing and have
-- nothing waiting, so that the registry of keys in use does not grow with
-- every key ever used. A pruned key comes back when a job of it is enqueued
-- or admitted again.
--
-- KEYS[1]  the limits hash ({p}:limits)
-- then, per key i: KEYS[2i] slots:K, KEYS[2i+1] wait:K
-- ARGV[i]  the i-th concurrency key K
-- Returns: how many keys were pruned.
--
-- A slots set exists exactly while it holds a slot (running, reserved, or
-- within its window: see bound_slots in slots.lua).

local pruned = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[2 * i]) == 0 and redis.call('LLEN', KEYS[2 * i + 1]) == 0 then
    pruned = pruned + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return pruned
