-- admit.lua: admit claimed entries, or send them to wait for their key.
--
-- KEYS[1]  leases sorted set
-- KEYS[2]  delayed sorted set
-- KEYS[3]  stats hash
-- then, per entry i: KEYS[3i+1] job hash, KEYS[3i+2] slots:K, KEYS[3i+3] wait:K
--          (for an entry without a key, or a "wake K" entry, the unused names
--          are still passed so that every key touched is declared)
-- ARGV[1]  lease length in ms
-- ARGV[1+i] the i-th claimed entry: "<id>", "<id> <K>" or "wake <K>"
-- Returns: { admitted, dropped } where admitted is a flat list of 7 values per
--   admitted job: entry, attempt, path, workspace, args, ckey, window_ms; and
--   dropped lists the ids not run (cancelled, finished, missing or corrupt).
--
-- Admission is the moment a worker commits to run a job: its slot is taken
-- here, atomically with the check, by Redis time.

local now = now_ms()
local leases, delayed, stats = KEYS[1], KEYS[2], KEYS[3]
local lease_ms = tonumber(ARGV[1])
local admitted, dropped, leased = {}, {}, {}

local function admit(job, entry, id, f, slots, ckey)
  local attempt = (tonumber(f[2]) or 0) + 1
  redis.call('HSET', job, 'status', 'running', 'started_at', now, 'attempt', attempt)
  if ckey ~= '' then redis.call('ZADD', slots, '+inf', id .. '#' .. attempt) end
  leased[#leased + 1] = now + lease_ms
  leased[#leased + 1] = entry
  local n = #admitted
  admitted[n + 1] = entry
  admitted[n + 2] = attempt
  admitted[n + 3] = f[4]
  admitted[n + 4] = f[5]
  admitted[n + 5] = f[6]
  admitted[n + 6] = ckey
  admitted[n + 7] = f[8] or '0'
end

local function to_wait(job, id, max, slots, wait, ckey)
  redis.call('HSET', job, 'status', 'waiting')
  redis.call('RPUSH', wait, id .. ' ' .. max)
end

local function fail_corrupt(job, id, reason)
  redis.call('HSET', job, 'status', 'failed', 'ended_at', now, 'error', 'corrupt job record: ' .. reason)
  count_final(stats, 'failed')
  dropped[#dropped + 1] = id
end

for i = 1, #ARGV - 1 do
  local entry = ARGV[1 + i]
  local job, slots, wait = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  -- Removing the claim's lease doubles as the check that it is still ours.
  if redis.call('ZREM', leases, entry) == 0 then
    -- The lease was recovered by another worker meanwhile: not ours any more.
    dropped[#dropped + 1] = entry
  elseif string.sub(entry, 1, 5) == 'wake ' then
    expire_slots(slots, now)
    settle(slots, wait, delayed, string.sub(entry, 6), now)
  else
    local id = string.sub(entry, 1, 36)
    local ckey = string.sub(entry, 38)
    local f = redis.call('HMGET', job, 'status', 'attempt', 'max', 'path', 'workspace', 'args', 'ckey', 'window_ms')
    local status = f[1]
    if status ~= 'queued' and status ~= 'scheduled' and status ~= 'waiting' then
      dropped[#dropped + 1] = id
    elseif ckey == '' then
      if f[7] and f[7] ~= '' then fail_corrupt(job, id, 'concurrency key differs from its queue entry')
      else admit(job, entry, id, f, slots, ckey) end
    else
      local max = tonumber(f[3])
      if f[7] ~= ckey or max == nil or max < 1 or tonumber(f[8]) == nil then
        fail_corrupt(job, id, 'max, window_ms or ckey missing or malformed')
      else
        expire_slots(slots, now)
        if redis.call('ZREM', slots, id .. '#r') == 1 then
          admit(job, entry, id, f, slots, ckey)
        elseif redis.call('LLEN', wait) > 0 then
          to_wait(job, id, max, slots, wait, ckey)
        else
          local held = redis.call('ZCARD', slots)
          if held < max then
            admit(job, entry, id, f, slots, ckey)
          else
            local first = first_timed_slot(slots)
            if first ~= nil and held == max then
              -- Take over the earliest slot that frees at a known time.
              redis.call('ZREM', slots, first[1])
              redis.call('ZADD', slots, '+inf', id .. '#r')
              redis.call('ZADD', delayed, first[2], entry)
              redis.call('HSET', job, 'status', 'waiting')
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
return { admitted, dropped }
