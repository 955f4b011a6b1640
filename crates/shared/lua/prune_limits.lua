-- prune_limits.lua: forget concurrency keys that hold nothing and have
-- nothing waiting, so that the registry of keys in use does not grow with
-- every key ever used. A pruned key comes back when a job of it is sent to
-- wait or admitted by a slow path again (held.lua); a key admitted by its
-- count alone is listed by its running count's field meanwhile. Retention
-- also passes the keys of the running counts' fields here, so that a field
-- left marking keys of its own (" s") goes once they are gone.
--
-- KEYS[1]  the limits hash ({p}:limits)
-- KEYS[2]  the running counts ({p}:running, see held.lua)
-- then, per key i: KEYS[2i+1] slots:K, KEYS[2i+2] wait:K
-- ARGV[i]  the i-th concurrency key K
-- Returns: how many keys were pruned.
--
-- A slots set exists exactly while it holds a slot (in its window, reserved,
-- or a pause: see bound_slots in slots.lua); a running execution is counted
-- in the running hash. A count field left marking keys of its own (" s")
-- after they expired on their own goes too, unless K has a limit set at
-- run time, which keeps the mark.

local limits, running = KEYS[1], KEYS[2]
local pruned = 0
for i = 1, #ARGV do
  local k = ARGV[i]
  local slots, wait = KEYS[2 * i + 1], KEYS[2 * i + 2]
  if redis.call('EXISTS', slots) == 0 and redis.call('LLEN', wait) == 0 then
    local count = redis.call('HGET', running, k)
    local idle = not count or tonumber(string.match(count, '^(%d+)')) == 0
    if idle then
      pruned = pruned + redis.call('HDEL', limits, k)
      if count and redis.call('HEXISTS', limits, '\31' .. k) == 0 then
        redis.call('HDEL', running, k)
        -- Only the pin left (held.lua): nothing is left behind.
        if redis.call('HLEN', running) == 1 and redis.call('HEXISTS', running, '\31') == 1 then
          redis.call('DEL', running)
        end
      end
    end
  end
end
return pruned
