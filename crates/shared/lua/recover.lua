-- recover.lua: take back executions whose lease ran out (their worker died,
-- froze or lost Redis) and run them again.
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- then, per entry i: KEYS[12+3i-2] slots:K, KEYS[12+3i-1] wait:K,
--          KEYS[12+3i] the state hash of the flow the job is a step of
--          (any names for keys a job does not have)
-- ARGV[i]  the i-th expired lease entry, as admit.lua returned it
-- Returns: the ids of executions found dead (status was running).
--
-- Each entry is checked again here, atomically: one renewed meanwhile, or
-- already recovered by another worker, is left alone. A dead execution's slot
-- counts as ended now, at the moment it was found dead.

local now = now_ms()
local now_s = ms_str(now)
local dead, requeued = {}, 0
local head_before = delayed_head(DELAYED)

for i = 1, #ARGV do
  local entry = ARGV[i]
  local slots, wait, fstate = KEYS[NS + 3 * i - 2], KEYS[NS + 3 * i - 1], KEYS[NS + 3 * i]
  local score = tonumber(redis.call('ZSCORE', LEASES, entry))
  if score ~= nil and score <= now then
    redis.call('ZREM', LEASES, entry)
    if string.sub(entry, 1, 5) == 'wake ' then
      redis.call('ZADD', DELAYED, 'LT', now, entry)
    else
      local id = string.sub(entry, 1, 36)
      local ckey = string.sub(entry, 38)
      local st = state_of(id)
      if st and st.status == 'running' and st.words.drive then
        -- A flow's driver died: the flow keeps its slot and is driven again;
        -- the new attempt fences off the old driver, should it come back.
        dead[#dead + 1] = id
        st.words.drive = 'queued'
        set_state(id, 'running', st.attempt + 1, st.at, st.words)
        redis.call('RPUSH', READY, entry)
        requeued = requeued + 1
      elseif st and st.status == 'running' then
        dead[#dead + 1] = id
        local attempt = st.attempt
        local spec = spec_of(id) or {}
        if ckey ~= '' then
          end_slot(slots, wait, DELAYED, ckey, id .. '#' .. attempt, tonumber(spec.window_ms) or 0, now)
        end
        local reason = 'worker lost: lease expired during attempt ' .. attempt
        local final = nil
        if st.words.cancel then
          -- It was asked to cancel: it ends here rather than running again.
          set_state(id, 'cancelled', attempt, now_s, { started = st.at, ready = st.words.ready })
          final, reason = 'cancelled', 'cancelled by request'
        elseif attempt >= max_attempts(spec.max_attempts) then
          set_state(id, 'failed', attempt, now_s, { started = st.at, ready = st.words.ready })
          set_result(id, reason)
          final = 'failed'
        else
          set_state(id, 'queued', attempt, now_s)
          set_result(id, reason)
          redis.call('RPUSH', READY, entry)
          requeued = requeued + 1
        end
        if final then
          finish(final, id, created_of(id, now_s))
          if notify_if_step(id, fstate, final, reason) then requeued = requeued + 1 end
        end
      end
    end
  end
end
flush_records()
flush_finished()
if requeued > 0 and redis.call('LLEN', MARKER) == 0 then redis.call('LPUSH', MARKER, '1') end
wake_if_earlier(DELAYED, MARKER, head_before)
return dead
