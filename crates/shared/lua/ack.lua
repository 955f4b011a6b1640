-- ack.lua: record the end of executions and free (or keep) their slots.
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- KEYS[12+2j-1], KEYS[12+2j]  slots:K and wait:K of the j-th key in ARGV
-- KEYS[12+2m+p]  the state hash of the p-th flow in ARGV
-- KEYS[12+2m+q+l]  the l-th lease key in ARGV
-- ARGV[1]  m, then the m concurrency keys of the executions that have one
-- ARGV[m+2]  q, then the q flow runs whose steps are among the executions
-- ARGV[m+q+3]  L, the number of lease keys (in KEYS) whose jobs have all
--   ended (among the executions below, or in earlier calls): they and their
--   leases go
-- then, per execution, 5 values: entry, attempt, started (the ms in its
--   running state, as admit.lua returned it), outcome, payload (the result
--   for "ok", the reason otherwise), where outcome is "ok", "err
--   <backoff_ms>" (backoff_ms: the first retry's delay) or "cancelled",
--   followed by " step" for a flow's step
-- Returns: the entries refused because their attempt is no longer current
--   (the lease was lost and the job recovered): such a late result is dropped.
--
-- A failed attempt is retried through the delayed set after
-- backoff_ms * 2^(attempt-1) while attempts remain (max_attempts in the spec,
-- default 3); a cancel request turns any outcome into "cancelled".

local now = now_ms()
local now_s = ms_str(now)
local refused = {}
local requeued = false
local head_before = delayed_head(DELAYED)
local m = tonumber(ARGV[1])
local declared, fstates = {}, {}
for j = 1, m do declared[ARGV[1 + j]] = { slots = KEYS[NS + 2 * j - 1], wait = KEYS[NS + 2 * j] } end
local q = tonumber(ARGV[m + 2])
for p = 1, q do fstates[ARGV[m + 2 + p]] = KEYS[NS + 2 * m + p] end
local function fstate_of(parent)
  return fstates[parent]
end
local nl = tonumber(ARGV[m + q + 3])
local b = m + q + 3
local n = (#ARGV - b) / 5
local ids = {}
for i = 1, n do
  local e = ARGV[b + 5 * i - 4]
  if #e == 36 then ids[i] = e else ids[i] = string.sub(e, 1, 36) end
end
local states = {}
if n > 0 then states = redis.call('HMGET', STATE, unpack(ids)) end

-- Anything but a plain success of a job without a key or flow.
local function slow(i, a)
  local entry, attempt, payload = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 5]
  local outcome, rest = string.match(ARGV[a + 4], '^(%a+)(.*)$')
  local is_step = string.find(rest or '', ' step', 1, true) ~= nil
  local id = ids[i]
  state_cache[id] = states[i] or false
  local st = state_of(id)
  if not st or st.status ~= 'running' or st.attempt ~= attempt then
    refused[#refused + 1] = entry
    return
  end
  local ckey = string.sub(entry, 38)
  local spec = nil
  if ckey ~= '' then
    spec = spec_of(id)
    -- A flow holds the slot its first driver took, whatever attempt ends it.
    local token = id .. '#' .. attempt
    if st.words.drive then token = id .. '#f' end
    local window = tonumber(spec and spec.window_ms) or 0
    local k = declared[ckey]
    end_slot(k.slots, k.wait, DELAYED, ckey, token, window, now)
  end
  if st.words.cancel and outcome ~= 'cancelled' then
    outcome = 'cancelled'
    payload = 'cancelled by request'
  end
  local final = nil
  local started = { started = st.at, ready = st.words.ready }
  if outcome == 'ok' then
    set_state(id, 'succeeded', attempt, now_s, started)
    set_result(id, payload)
    final = 'succeeded'
  elseif outcome == 'cancelled' then
    set_state(id, 'cancelled', attempt, now_s, started)
    final = 'cancelled'
  else
    if spec == nil then spec = spec_of(id) end
    if attempt < max_attempts(spec and spec.max_attempts) then
      local backoff = tonumber(string.match(rest, '^ (%d+)')) or 1000
      local at = ms_str(now + backoff * 2 ^ (attempt - 1))
      set_state(id, 'scheduled', attempt, at)
      set_result(id, payload)
      redis.call('ZADD', DELAYED, at, entry)
    else
      set_state(id, 'failed', attempt, now_s, started)
      set_result(id, payload)
      final = 'failed'
    end
  end
  if final then
    finish(final, id)
    if is_step and notify_if_step(id, fstate_of, final, payload) then requeued = true end
  end
end

for i = 1, n do
  local a = b + 5 * i - 5
  local entry, attempt, started = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if ARGV[a + 4] == 'ok' and #entry == 36 and states[i] == 'running ' .. attempt .. ' ' .. started then
    -- The common case, kept to the fewest Lua operations.
    local id = ids[i]
    put_state(id, 'succeeded ' .. attempt .. ' ' .. now_s .. ' started=' .. started)
    set_result(id, ARGV[a + 5])
    finish('succeeded', id)
  else
    slow(i, a)
  end
end
if nl > 0 then
  local leases = {}
  for l = 1, nl do leases[l] = KEYS[NS + 2 * m + q + l] end
  redis.call('DEL', unpack(leases))
  redis.call('ZREM', LEASES, unpack(leases))
end
flush_records()
flush_finished()
wake_if_earlier(DELAYED, MARKER, head_before)
if requeued and redis.call('LLEN', MARKER) == 0 then redis.call('LPUSH', MARKER, '1') end
return refused
