-- cancel.lua: cancel a job that has not finished.
--
-- KEYS[1]  ready list
-- KEYS[2]  delayed sorted set
-- KEYS[3]  stats hash
-- KEYS[4]  the job hash
-- KEYS[5]  slots:K of the job's concurrency key (any name when it has none)
-- KEYS[6]  wait:K
-- KEYS[7..10]  indexes of finished jobs: idx:done, idx:status:succeeded, :failed, :cancelled
-- KEYS[11] the parent flow's job hash, KEYS[12] its state hash (any names
--          for a job that is not a flow's step)
-- KEYS[13] marker list
-- ARGV[1]  job id
-- ARGV[2]  the job's concurrency key as the caller read it ("" for none)
-- Returns: "cancelled", "requested" (running: its worker stops it), "finished"
--   or "missing"; an error if the key changed under the caller.

local now = now_ms()
local ready, delayed, stats, job, slots, wait = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, ckey = ARGV[1], ARGV[2]
local f = redis.call('HMGET', job, 'status', 'ckey', 'max', 'created_at', 'kind', 'drive', 'slot', 'window_ms',
  'parent', 'step', 'iter')
local status = f[1]
if not status then return 'missing' end
if (f[2] or '') ~= ckey then return redis.error_reply('concurrency key of job ' .. id .. ' changed while cancelling') end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
local parked_flow = status == 'running' and f[5] == 'flow' and f[6] ~= 'active'
if status == 'running' and not parked_flow then
  redis.call('HSET', job, 'cancel', '1')
  return 'requested'
end

local entry = make_entry(id, ckey)
redis.call('LREM', ready, 1, entry)
local at = tonumber(redis.call('ZSCORE', delayed, entry))
redis.call('ZREM', delayed, entry)
local head_before = delayed_head(delayed)
if parked_flow then
  -- Not driving: it holds its slot and nothing else, so it ends here.
  if ckey ~= '' then end_slot(slots, wait, delayed, ckey, f[7], tonumber(f[8]) or 0, now) end
elseif ckey ~= '' then
  redis.call('LREM', wait, 1, id .. ' ' .. (f[3] or ''))
  -- A reserved slot goes back to what it was: the tail of an ended slot.
  if redis.call('ZREM', slots, id .. '#r') == 1 and at ~= nil and at > now then
    redis.call('ZADD', slots, at, id .. '#c')
  end
end
if status == 'waiting' then count_waiting(-1) end
redis.call('HSET', job, 'status', 'cancelled', 'ended_at', now, 'cancel', '1')
finish('cancelled', id, f[4], ms_str(now))
if f[9] and f[9] ~= '' and notify_parent(KEYS[11], KEYS[12], ready, id, f[10], f[11], 'cancelled', 'cancelled by request') then
  if redis.call('LLEN', KEYS[13]) == 0 then redis.call('LPUSH', KEYS[13], '1') end
end
flush_finished(stats, index_keys(7))
if ckey ~= '' then
  expire_slots(slots, now)
  settle(slots, wait, delayed, ckey, now)
end
-- A slot handed to a waiter here must reach a worker's timer.
wake_if_earlier(delayed, KEYS[13], head_before)
return 'cancelled'
