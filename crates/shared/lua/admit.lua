-- admit.lua: take the entries peek.lua saw, if they are still there, and
-- admit them, or send them to wait for their key.
--
-- KEYS[1]  leases sorted set
-- KEYS[2]  delayed sorted set
-- KEYS[3]  ready list
-- KEYS[4]  stats hash
-- KEYS[5]  marker list
-- KEYS[6..9]  indexes of finished jobs: idx:done, idx:status:succeeded, :failed, :cancelled
--          (a flow's driver entry, status running and drive "queued", is
--          resumed: it already holds its flow's slot)
-- then, per entry i: KEYS[4i+6] job hash, KEYS[4i+7] args string, KEYS[4i+8] slots:K,
--          KEYS[4i+9] wait:K
--          (for an entry without a key, or a "wake K" entry, the unused names
--          are still passed so that every key touched is declared)
-- ARGV[1]  lease length in ms
-- ARGV[2]  D, how many of the entries come from the delayed set (they come first)
-- ARGV[2+i] the i-th entry: "<id>", "<id> <K>" or "wake <K>"
-- Returns: { admitted, dropped, taken, next_in_ms } where admitted is a flat
--   list of 13 values per admitted job: entry, attempt, path, workspace, args,
--   ckey, window_ms, queued_ms (since it became ready), late_ms (since its
--   reserved slot freed, or -1), kind, parent, flow, step; dropped lists the ids not run (cancelled, finished,
--   missing or corrupt); taken counts the entries that were still there to
--   take; next_in_ms is as in peek.lua, after this call's changes.
--
-- Taking and admitting in one atomic step keeps each key's jobs admitted in
-- the order they became ready, however many workers race. Admission is the
-- moment a worker commits to run a job: its slot is taken here, by Redis time.

local now = now_ms()
local now_s = ms_str(now)
local leases, delayed, ready, stats, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local deadline_s = ms_str(now + tonumber(ARGV[1]))
local n_due = tonumber(ARGV[2])
local n = #ARGV - 2
local head_before = delayed_head(delayed)
local admitted, dropped, leased = {}, {}, {}

local late_ms = -1

local function admit(job, args_key, entry, id, f, slots, ckey)
  local attempt = (tonumber(f[2]) or 0) + 1
  if f[11] == 'queued' then
    -- A flow's driver resumed: same run, same slot, a new attempt to fence with.
    redis.call('HSET', job, 'attempt', attempt, 'drive', 'active')
  else
    redis.call('HSET', job, 'status', 'running', 'started_at', now_s, 'attempt', attempt)
    if ckey ~= '' then redis.call('ZADD', slots, '+inf', id .. '#' .. attempt) end
    if f[12] == 'flow' then
      local slot = ''
      if ckey ~= '' then slot = id .. '#' .. attempt end
      redis.call('HSET', job, 'drive', 'active', 'entry', entry, 'slot', slot)
    end
  end
  leased[#leased + 1] = deadline_s
  leased[#leased + 1] = entry
  local n = #admitted
  admitted[n + 1] = entry
  admitted[n + 2] = attempt
  admitted[n + 3] = f[4]
  admitted[n + 4] = f[5]
  admitted[n + 5] = f[8] or redis.call('GET', args_key)
  admitted[n + 6] = ckey
  admitted[n + 7] = f[7] or '0'
  admitted[n + 8] = now - (tonumber(f[10]) or tonumber(f[9]) or now)
  admitted[n + 9] = late_ms
  admitted[n + 10] = f[12] or ''
  admitted[n + 11] = f[13] or ''
  admitted[n + 12] = f[14] or ''
  admitted[n + 13] = f[15] or ''
end

local function to_wait(job, id, max, slots, wait, ckey)
  redis.call('HSET', job, 'status', 'waiting')
  count_waiting(1)
  redis.call('RPUSH', wait, id .. ' ' .. max)
end

local function fail_corrupt(job, id, created_at, reason)
  redis.call('HSET', job, 'status', 'failed', 'ended_at', now_s, 'error', 'corrupt job record: ' .. reason)
  finish('failed', id, created_at, now_s)
  dropped[#dropped + 1] = id
end

-- What is still there to take: due entries one by one (another worker may
-- have taken some), and the longest prefix of the ready list's head as seen.
local take, due_score = {}, {}
for i = 1, n_due do
  local score = tonumber(redis.call('ZSCORE', delayed, ARGV[2 + i]))
  take[i] = score ~= nil and score <= now
  due_score[i] = score
end
local n_ready = n - n_due
if n_ready > 0 then
  local head = redis.call('LRANGE', ready, 0, n_ready - 1)
  local m = 0
  while m < n_ready and head[m + 1] == ARGV[2 + n_due + m + 1] do m = m + 1 end
  if m > 0 then redis.call('LTRIM', ready, m, -1) end
  for i = 1, n_ready do take[n_due + i] = i <= m end
end
local taken_due = {}
for i = 1, n_due do
  if take[i] then taken_due[#taken_due + 1] = ARGV[2 + i] end
end
if #taken_due > 0 then redis.call('ZREM', delayed, unpack(taken_due)) end

local taken = 0
for i = 1, n do
  local entry = ARGV[2 + i]
  local job, args_key, slots, wait = KEYS[4 * i + 6], KEYS[4 * i + 7], KEYS[4 * i + 8], KEYS[4 * i + 9]
  if not take[i] then
    -- Taken by another worker meanwhile.
  elseif string.sub(entry, 1, 5) == 'wake ' then
    taken = taken + 1
    expire_slots(slots, now)
    settle(slots, wait, delayed, string.sub(entry, 6), now)
  else
    taken = taken + 1
    local id = string.sub(entry, 1, 36)
    local ckey = string.sub(entry, 38)
    local f = redis.call('HMGET', job, 'status', 'attempt', 'max', 'path', 'workspace', 'ckey', 'window_ms', 'args',
      'created_at', 'ready_at', 'drive', 'kind', 'parent', 'flow', 'step')
    late_ms = -1
    local status = f[1]
    if status == 'running' and f[11] == 'queued' then
      admit(job, args_key, entry, id, f, slots, ckey)
    elseif status ~= 'queued' and status ~= 'scheduled' and status ~= 'waiting' then
      dropped[#dropped + 1] = id
    elseif ckey == '' then
      if f[6] and f[6] ~= '' then fail_corrupt(job, id, f[9], 'concurrency key differs from its queue entry')
      else admit(job, args_key, entry, id, f, slots, ckey) end
    else
      local max = tonumber(f[3])
      if f[6] ~= ckey or max == nil or max < 1 or tonumber(f[7]) == nil then
        fail_corrupt(job, id, f[9], 'max, window_ms or ckey missing or malformed')
      else
        expire_slots(slots, now)
        if redis.call('ZREM', slots, id .. '#r') == 1 then
          count_waiting(-1)
          if due_score[i] then late_ms = now - due_score[i] end
          admit(job, args_key, entry, id, f, slots, ckey)
        elseif redis.call('LLEN', wait) > 0 then
          to_wait(job, id, max, slots, wait, ckey)
        else
          local held = redis.call('ZCARD', slots)
          if held < max then
            admit(job, args_key, entry, id, f, slots, ckey)
          else
            local first = first_timed_slot(slots)
            if first ~= nil and held == max then
              -- Take over the earliest slot that frees at a known time.
              redis.call('ZREM', slots, first[1])
              redis.call('ZADD', slots, '+inf', id .. '#r')
              redis.call('ZADD', delayed, first[2], entry)
              redis.call('HSET', job, 'status', 'waiting')
              count_waiting(1)
            else
              to_wait(job, id, max, slots, wait, ckey)
              if first ~= nil then redis.call('ZADD', delayed, 'LT', first[2], 'wake ' .. ckey) end
            end
          end
        end
      end
    end
  end
end
-- The running executions' leases, renewed by the worker until they end.
if #leased > 0 then redis.call('ZADD', leases, unpack(leased)) end
wake_if_earlier(delayed, marker, head_before)
-- This worker took all it had room for and more remains: pass the wake-up on
-- to another idle worker.
if redis.call('LLEN', marker) == 0 then
  local more = redis.call('LLEN', ready) > 0
  if not more then more = #redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1) > 0 end
  if more then redis.call('LPUSH', marker, '1') end
end
flush_finished(stats, index_keys(6))
return { admitted, dropped, taken, next_in_ms(delayed, leases, now) }
