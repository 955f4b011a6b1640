-- recover.lua: take back executions whose lease ran out (their worker died,
-- froze or lost Redis) and run them again.
--
-- KEYS[1]  leases sorted set
-- KEYS[2]  delayed sorted set
-- KEYS[3]  ready list
-- KEYS[4]  stats hash
-- KEYS[5]  marker list
-- KEYS[6..9]  indexes of finished jobs: idx:done, idx:status:succeeded, :failed, :cancelled
-- then, per entry i: KEYS[5i+5] job hash, KEYS[5i+6] slots:K, KEYS[5i+7] wait:K,
--          KEYS[5i+8] the parent flow's job hash, KEYS[5i+9] its state hash
-- ARGV[i]  the i-th expired lease entry, as peek.lua returned it
-- Returns: the ids of executions found dead (status was running).
--
-- Each entry is checked again here, atomically: one renewed meanwhile, or
-- already recovered by another worker, is left alone. A dead execution's slot
-- counts as ended now, at the moment it was found dead.

local now = now_ms()
local now_s = ms_str(now)
local leases, delayed, ready, stats, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local dead, requeued = {}, 0
local head_before = delayed_head(delayed)

for i = 1, #ARGV do
  local entry = ARGV[i]
  local job, slots, wait = KEYS[5 * i + 5], KEYS[5 * i + 6], KEYS[5 * i + 7]
  local score = tonumber(redis.call('ZSCORE', leases, entry))
  if score ~= nil and score <= now then
    redis.call('ZREM', leases, entry)
    if string.sub(entry, 1, 5) == 'wake ' then
      redis.call('ZADD', delayed, 'LT', now, entry)
    else
      local id = string.sub(entry, 1, 36)
      local ckey = string.sub(entry, 38)
      local f = redis.call('HMGET', job, 'status', 'attempt', 'max_attempts', 'window_ms', 'created_at',
        'kind', 'parent', 'step', 'iter', 'cancel')
      local attempt = tonumber(f[2]) or 0
      if f[1] == 'running' and f[6] == 'flow' then
        -- A flow's driver died: the flow keeps its slot and is driven again;
        -- the new attempt fences off the old driver, should it come back.
        dead[#dead + 1] = id
        redis.call('HSET', job, 'drive', 'queued', 'attempt', attempt + 1)
        redis.call('RPUSH', ready, entry)
        requeued = requeued + 1
      elseif f[1] == 'running' then
        dead[#dead + 1] = id
        if ckey ~= '' then
          end_slot(slots, wait, delayed, ckey, id .. '#' .. attempt, tonumber(f[4]) or 0, now)
        end
        local reason = 'worker lost: lease expired during attempt ' .. attempt
        if f[10] == '1' then
          -- It was asked to cancel: it ends here rather than running again.
          redis.call('HSET', job, 'status', 'cancelled', 'ended_at', now_s)
          finish('cancelled', id, f[5], now_s)
          if f[7] and f[7] ~= '' then
            notify_parent(KEYS[5 * i + 8], KEYS[5 * i + 9], ready, id, f[8], f[9], 'cancelled', 'cancelled by request')
            requeued = requeued + 1
          end
        elseif attempt >= max_attempts(f[3]) then
          redis.call('HSET', job, 'status', 'failed', 'error', reason, 'ended_at', now_s)
          finish('failed', id, f[5], now_s)
          if f[7] and f[7] ~= '' then
            notify_parent(KEYS[5 * i + 8], KEYS[5 * i + 9], ready, id, f[8], f[9], 'failed', reason)
            requeued = requeued + 1
          end
        else
          redis.call('HSET', job, 'status', 'queued', 'error', reason, 'ready_at', now_s)
          redis.call('RPUSH', ready, entry)
          requeued = requeued + 1
        end
      end
    end
  end
end
if requeued > 0 and redis.call('LLEN', marker) == 0 then redis.call('LPUSH', marker, '1') end
wake_if_earlier(delayed, marker, head_before)
flush_finished(stats, index_keys(6))
return dead
