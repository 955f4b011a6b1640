-- recover.lua: take back executions whose lease ran out (their worker died,
-- froze or lost Redis) and run them again.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+l]  the l-th expired lease key (L of them, see admit.lua)
-- then, per execution i: KEYS[NS+L+3i-2] slots:K, KEYS[NS+L+3i-1] wait:K,
--          KEYS[NS+L+3i] the state hash of the flow the job is a step of
--          (any names for keys a job does not have)
-- ARGV[1]  L
-- then, per execution i listed in those lease keys, 3 values: the index l of
--   its lease key, its attempt and its entry
-- Returns: the ids of executions found dead (still running that attempt);
--   the error STALETAGS (nothing written) when the caller's view of the
--   tags registry is out of date.
--
-- Each lease is checked again here, atomically: one renewed meanwhile, or
-- already recovered by another worker, is left alone. A dead execution's slot
-- counts as ended now, at the moment it was found dead. A flow run is dead
-- only while its driver runs (drive=active); parked, it holds no worker.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now = now_ms()
local now_s = ms_str(now)
local dead = {}
note_heads()
local nl = tonumber(ARGV[1])
local expired, gone = {}, {}
for l = 1, nl do
  local score = tonumber(redis.call('ZSCORE', LEASES, KEYS[NS + l]))
  if score ~= nil and score <= now then
    expired[l] = true
    gone[#gone + 1] = KEYS[NS + l]
  end
end

for i = 1, (#ARGV - 1) / 3 do
  local l, attempt, entry = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), ARGV[3 * i + 1]
  local k = NS + nl + 3 * i
  local slots, wait, fstate = KEYS[k - 2], KEYS[k - 1], KEYS[k]
  local id = entry_id(entry)
  local ckey = entry_ckey(entry)
  local st = expired[l] and state_of(id)
  if st and st.status == 'running' and st.attempt == attempt then
    if st.words.drive == 'active' then
      -- A flow's driver died: the flow keeps its slot and is driven again;
      -- the new attempt fences off the old driver, should it come back.
      dead[#dead + 1] = id
      st.words.drive = 'queued'
      set_state(id, 'running', st.attempt + 1, st.at, st.words)
      push_ready(queue_of(id), { entry })
    elseif not st.words.drive then
      dead[#dead + 1] = id
      local spec = spec_of(id) or {}
      if ckey ~= '' then
        end_slot(slots, wait, ckey, id .. '#' .. attempt, tonumber(spec.window_ms) or 0, now)
      end
      local reason = 'worker lost: lease expired during attempt ' .. attempt
      local final = nil
      if st.words.cancel then
        -- It was asked to cancel: it ends here rather than running again.
        set_state(id, 'cancelled', attempt, now_s, { started = st.at, ready = st.words.ready })
        final, reason = 'cancelled', 'cancelled by request'
      elseif attempt - (tonumber(st.words.throttled) or 0) >= max_attempts(spec.max_attempts) then
        set_state(id, 'failed', attempt, now_s, { started = st.at, ready = st.words.ready })
        set_result(id, reason)
        final = 'failed'
      else
        set_state(id, 'queued', attempt, now_s, { throttled = st.words.throttled })
        set_result(id, reason)
        push_ready(queue_of(id), { entry })
      end
      if final then
        finish(final, entry)
        notify_if_step(id, function() return fstate end, final, reason)
      end
    end
  end
end
if #gone > 0 then
  redis.call('DEL', unpack(gone))
  redis.call('ZREM', LEASES, unpack(gone))
end
flush_records()
flush_finished()
flush_held()
flush_queues()
return dead
