-- ack.lua: record the end of executions and free (or keep) their slots.
--
-- KEYS[1]  leases sorted set
-- KEYS[2]  delayed sorted set
-- KEYS[3]  stats hash
-- KEYS[4]  marker list
-- KEYS[5..8]  indexes of finished jobs: idx:done, idx:status:succeeded, :failed, :cancelled
-- KEYS[9]  ready list (a flow whose step ended goes back on it)
-- then, per execution i: KEYS[5i+5] job hash, KEYS[5i+6] slots:K, KEYS[5i+7] wait:K,
--          KEYS[5i+8] the parent flow's job hash, KEYS[5i+9] its state hash
--          (any names for a job that is not a flow's step)
-- ARGV, per execution i, 5 values from ARGV[5i-4]:
--   entry, attempt, outcome ("ok", "err" or "cancelled"), payload (the result
--   for "ok", the reason otherwise), backoff_ms (the first retry's delay)
-- Returns: the entries refused because their attempt is no longer current
--   (the lease was lost and the job recovered): such a late result is dropped.
--
-- A failed attempt is retried through the delayed set after
-- backoff_ms * 2^(attempt-1) while attempts remain (max_attempts, stamped at
-- enqueue when not the default 3); a cancel request turns any outcome into "cancelled".

local now = now_ms()
local now_s = ms_str(now)
local leases, delayed, stats, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local refused, ended = {}, {}
local requeued = false
local head_before = delayed_head(delayed)

for i = 1, #ARGV / 5 do
  local a = 5 * i - 5
  local entry, attempt, outcome, payload = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
  local job, slots, wait = KEYS[5 * i + 5], KEYS[5 * i + 6], KEYS[5 * i + 7]
  local f = redis.call('HMGET', job, 'status', 'attempt', 'window_ms', 'cancel', 'max_attempts', 'created_at',
    'slot', 'parent', 'step', 'iter')
  if f[1] ~= 'running' or tonumber(f[2]) ~= attempt then
    refused[#refused + 1] = entry
  else
    ended[#ended + 1] = entry
    local id, ckey = string.sub(entry, 1, 36), string.sub(entry, 38)
    if ckey ~= '' then
      -- A flow holds the slot its first driver took, whatever attempt ends it.
      local token = f[7]
      if not token or token == '' then token = id .. '#' .. attempt end
      end_slot(slots, wait, delayed, ckey, token, tonumber(f[3]) or 0, now)
    end
    local final = nil
    if f[4] == '1' then outcome = 'cancelled' end
    if outcome == 'ok' then
      redis.call('HSET', job, 'status', 'succeeded', 'result', payload, 'ended_at', now_s)
      finish('succeeded', id, f[6], now_s)
      final = 'succeeded'
    elseif outcome == 'cancelled' then
      redis.call('HSET', job, 'status', 'cancelled', 'ended_at', now_s)
      finish('cancelled', id, f[6], now_s)
      final = 'cancelled'
    elseif attempt < max_attempts(f[5]) then
      local at = now + tonumber(ARGV[a + 5]) * 2 ^ (attempt - 1)
      redis.call('HSET', job, 'status', 'scheduled', 'error', payload, 'ready_at', ms_str(at))
      redis.call('ZADD', delayed, ms_str(at), entry)
    else
      redis.call('HSET', job, 'status', 'failed', 'error', payload, 'ended_at', now_s)
      finish('failed', id, f[6], now_s)
      final = 'failed'
    end
    if final and f[8] and f[8] ~= '' then
      if notify_parent(KEYS[5 * i + 8], KEYS[5 * i + 9], KEYS[9], id, f[9], f[10], final, payload) then
        requeued = true
      end
    end
  end
end
if #ended > 0 then redis.call('ZREM', leases, unpack(ended)) end
wake_if_earlier(delayed, marker, head_before)
if requeued and redis.call('LLEN', marker) == 0 then redis.call('LPUSH', marker, '1') end
flush_finished(stats, index_keys(5))
return refused
