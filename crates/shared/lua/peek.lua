-- peek.lua: look, without changing anything, at what a worker could take now.
--
-- KEYS[1]  ready list
-- KEYS[2]  delayed sorted set (Unix ms)
-- KEYS[3]  leases sorted set (Unix ms deadline)
-- ARGV[1]  N, how many entries the worker has room for (at least 1)
-- Returns: { due, head, expired, next_in_ms }
--   due: delayed entries whose time has come (at most N), oldest first;
--   head: the first entries of the ready list (at most N);
--   expired: lease entries past their deadline (at most N);
--   next_in_ms: ms until the next delayed entry or lease deadline, or -1 for
--   none; relative, so the worker's own clock never matters.
--
-- admit.lua then takes what is still there, in the order the entries became
-- ready, atomically with admission: that is what keeps jobs of one key
-- admitted in order across many workers.

local now = now_ms()
local want = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, want)
local head = redis.call('LRANGE', KEYS[1], 0, want - 1)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, want)

return { due, head, expired, next_in_ms(KEYS[2], KEYS[3], now) }
