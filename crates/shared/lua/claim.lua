-- claim.lua: take up to N entries that are due, for this worker to admit.
--
-- KEYS[1]  ready list
-- KEYS[2]  delayed sorted set (Unix ms)
-- KEYS[3]  leases sorted set (Unix ms deadline)
-- KEYS[4]  marker list
-- ARGV[1]  N, how many entries the worker can take now (0 is allowed)
-- ARGV[2]  lease length in ms
-- Returns: { claimed entries, expired lease entries (at most N), next_in_ms }
--   next_in_ms: ms until the next delayed entry or lease deadline, or -1 for
--   none. Relative, so that the worker's own clock never matters.
--
-- Claimed entries get a lease, so an entry whose worker dies before admitting
-- it is found again by recover.lua. Due delayed entries go first: they became
-- ready earlier than anything pushed on the ready list since.

local now = now_ms()
local want = tonumber(ARGV[1])
local lease_ms = tonumber(ARGV[2])
local claimed = {}
if want > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, want)
  if #due > 0 then
    redis.call('ZREM', KEYS[2], unpack(due))
    for _, e in ipairs(due) do claimed[#claimed + 1] = e end
  end
  if #claimed < want then
    local popped = redis.call('LPOP', KEYS[1], want - #claimed)
    if popped then
      for _, e in ipairs(popped) do claimed[#claimed + 1] = e end
    end
  end
  if #claimed > 0 then
    local args = {}
    for _, e in ipairs(claimed) do
      args[#args + 1] = now + lease_ms
      args[#args + 1] = e
    end
    redis.call('ZADD', KEYS[3], unpack(args))
  end
end

local expired = {}
if want > 0 then
  expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, want)
end

-- More work than this worker took: pass the wake-up on to another idle worker.
if #claimed == want and want > 0 then
  local more = redis.call('LLEN', KEYS[1]) > 0
  if not more then
    more = #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1) > 0
  end
  if more and redis.call('LLEN', KEYS[4]) == 0 then redis.call('LPUSH', KEYS[4], '1') end
end

local next_at = -1
local d = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if d[2] then next_at = tonumber(d[2]) end
local l = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if l[2] and (next_at < 0 or tonumber(l[2]) < next_at) then next_at = tonumber(l[2]) end
local next_in = -1
if next_at >= 0 then next_in = math.max(0, next_at - now) end
return { claimed, expired, next_in }
