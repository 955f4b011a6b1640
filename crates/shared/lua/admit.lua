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
-- ARGV[3]  room: how many jobs this worker takes at most
-- ARGV[3+i] the i-th entry: "<id>", "<id> <K>" or "wake <K>"
-- Returns: { admitted, dropped, more, next_in_ms } where admitted is a flat
--   list of 13 values per admitted job: entry, attempt, path, workspace, args,
--   ckey, window_ms, queued_ms (since it became ready), late_ms (since its
--   reserved slot freed, or -1), kind, parent, flow, step; dropped lists the ids not run (cancelled, finished,
--   missing or corrupt); more is 1 when entries were left for another turn
--   (no room, or another worker took some); next_in_ms is as in peek.lua,
--   after this call's changes.
--
-- Due delayed entries and the ready list's head are taken in the order they
-- became ready (a delayed entry at its due time, a ready one at its ready_at
-- or created_at), so a delay that ran out never overtakes an older job.
--
-- Taking and admitting in one atomic step keeps each key's jobs admitted in
-- the order they became ready, however many workers race. Admission is the
-- moment a worker commits to run a job: its slot is taken here, by Redis time.

local now = now_ms()
local now_s = ms_str(now)
local leases, delayed, ready, stats, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local deadline_s = ms_str(now + tonumber(ARGV[1]))
local n_due = tonumber(ARGV[2])
local room = tonumber(ARGV[3])
local n = #ARGV - 3
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

-- A job that will not run gives back a slot reserved for it, if any.
local function release_reservation(slots, wait, ckey, id)
  if ckey ~= '' and redis.call('ZREM', slots, id .. '#r') == 1 then
    count_waiting(-1)
    expire_slots(slots, now)
    settle(slots, wait, delayed, ckey, now)
  end
end

local function fail_corrupt(job, id, created_at, reason)
  redis.call('HSET', job, 'status', 'failed', 'ended_at', now_s, 'error', 'corrupt job record: ' .. reason)
  finish('failed', id, created_at, now_s)
  dropped[#dropped + 1] = id
end

local FIELDS = { 'status', 'attempt', 'max', 'path', 'workspace', 'ckey', 'window_ms', 'args',
  'created_at', 'ready_at', 'drive', 'kind', 'parent', 'flow', 'step' }
local function read(i)
  return redis.call('HMGET', KEYS[4 * i + 6], unpack(FIELDS))
end

-- What is still there to take: due entries one by one (another worker may
-- have taken some), and the longest prefix of the ready list's head as seen.
local due_score, f_of = {}, {}
local more = false
for i = 1, n_due do
  local score = tonumber(redis.call('ZSCORE', delayed, ARGV[3 + i]))
  if score ~= nil and score <= now then due_score[i] = score else more = true end
end
local n_ready, m = n - n_due, 0
if n_ready > 0 then
  local head = redis.call('LRANGE', ready, 0, n_ready - 1)
  while m < n_ready and head[m + 1] == ARGV[3 + n_due + m + 1] do m = m + 1 end
  if m < n_ready then more = true end
end

-- Merge the two by ready time, up to `room` jobs; "wake" entries cost no room.
local order, taken_due = {}, {}
local d, r, picked = 1, 1, 0
local function next_due()
  while d <= n_due and due_score[d] == nil do d = d + 1 end
  return d <= n_due
end
while true do
  local has_due, has_ready = next_due(), r <= m
  if not has_due and not has_ready then break end
  local wake = has_due and string.sub(ARGV[3 + d], 1, 5) == 'wake '
  if picked >= room and not wake then
    more = true
    break
  end
  local take_due = has_due
  if has_due and has_ready and not wake then
    local i = n_due + r
    f_of[i] = read(i)
    local ready_at = tonumber(f_of[i][10]) or tonumber(f_of[i][9]) or now
    take_due = due_score[d] < ready_at
  end
  if take_due then
    order[#order + 1] = d
    taken_due[#taken_due + 1] = ARGV[3 + d]
    if not wake then picked = picked + 1 end
    d = d + 1
  else
    order[#order + 1] = n_due + r
    picked = picked + 1
    r = r + 1
  end
end
-- A full take suggests more is waiting beyond what was peeked.
if picked >= room then more = true end
if #taken_due > 0 then redis.call('ZREM', delayed, unpack(taken_due)) end
if r > 1 then redis.call('LTRIM', ready, r - 1, -1) end

for _, i in ipairs(order) do
  local entry = ARGV[3 + i]
  local job, args_key, slots, wait = KEYS[4 * i + 6], KEYS[4 * i + 7], KEYS[4 * i + 8], KEYS[4 * i + 9]
  if string.sub(entry, 1, 5) == 'wake ' then
    expire_slots(slots, now)
    settle(slots, wait, delayed, string.sub(entry, 6), now)
  else
    local id = string.sub(entry, 1, 36)
    local ckey = string.sub(entry, 38)
    local f = f_of[i] or read(i)
    late_ms = -1
    local status = f[1]
    if status == 'running' and f[11] == 'queued' then
      admit(job, args_key, entry, id, f, slots, ckey)
    elseif status ~= 'queued' and status ~= 'scheduled' and status ~= 'waiting' then
      release_reservation(slots, wait, ckey, id)
      dropped[#dropped + 1] = id
    elseif ckey == '' then
      if f[6] and f[6] ~= '' then fail_corrupt(job, id, f[9], 'concurrency key differs from its queue entry')
      else admit(job, args_key, entry, id, f, slots, ckey) end
    else
      local max = tonumber(f[3])
      if f[6] ~= ckey or max == nil or max < 1 or tonumber(f[7]) == nil then
        release_reservation(slots, wait, ckey, id)
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
local more_n = 0
if more then more_n = 1 end
return { admitted, dropped, more_n, next_in_ms(delayed, leases, now) }
