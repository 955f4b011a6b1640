-- jobs.lua: helpers prepended to every script, next to slots.lua, for the
-- scripts that write new jobs (enqueue.lua, and drive.lua for a flow's steps)
-- and those that tell a flow that one of its steps has finished.

-- Values per job in the ARGV of a script that writes jobs.
local JOB_ARGS = 14

-- Args up to this size stay in the job hash; Redis keeps a hash compact only
-- while every value is at most 64 bytes (hash-max-listpack-value).
local INLINE_ARGS = 48

-- Writes the job whose 14 values start at ARGV[a + 1]: delay_ms, entry, path,
-- workspace, args, ckey, max, window_ms, max_attempts ("" for the default),
-- kind ("" for a script), parent, flow, step, iter ("" when not a flow's).
-- keys = { job, args, idx_key, limits }. Returns the entry when it is ready
-- now (the caller pushes those on the ready list in one go), else nil.
local function write_job(keys, a, now, now_s, limits_seen)
  local delay_ms, entry = tonumber(ARGV[a + 1]), ARGV[a + 2]
  local job, ckey = keys.job, ARGV[a + 6]
  local status = 'queued'
  if delay_ms > 0 then status = 'scheduled' end
  if ckey == '' then
    redis.call('HSET', job, 'path', ARGV[a + 3], 'workspace', ARGV[a + 4], 'status', status, 'created_at', now_s)
  else
    redis.call('HSET', job, 'path', ARGV[a + 3], 'workspace', ARGV[a + 4], 'status', status, 'created_at', now_s,
      'ckey', ckey, 'max', ARGV[a + 7], 'window_ms', ARGV[a + 8])
    redis.call('ZADD', keys.idx_key, now_s, string.sub(entry, 1, 36))
    local stamp = ARGV[a + 7] .. ' ' .. ARGV[a + 8]
    if limits_seen[ckey] ~= stamp then
      limits_seen[ckey] = stamp
      redis.call('HSET', keys.limits, ckey, stamp)
    end
  end
  if ARGV[a + 9] ~= '' then redis.call('HSET', job, 'max_attempts', ARGV[a + 9]) end
  if ARGV[a + 10] ~= '' then
    redis.call('HSET', job, 'kind', ARGV[a + 10])
    if ARGV[a + 11] ~= '' then
      redis.call('HSET', job, 'parent', ARGV[a + 11], 'flow', ARGV[a + 12], 'step', ARGV[a + 13], 'iter', ARGV[a + 14])
    end
  end
  local args = ARGV[a + 5]
  if #args <= INLINE_ARGS then
    redis.call('HSET', job, 'args', args)
  else
    redis.call('SET', keys.args, args)
  end
  if delay_ms > 0 then
    local at = ms_str(now + delay_ms)
    redis.call('HSET', job, 'ready_at', at)
    redis.call('ZADD', KEYS[2], at, entry)
    return nil
  end
  return entry
end

-- A step of a flow reached a final state: record it in the flow's state hash
-- and get the flow driven again. A parked flow goes back on the ready list; one
-- whose driver is queued or running is marked dirty, and its driver looks again
-- before it parks. `state` is the flow's state hash, `parent` its job hash.
-- Returns true when the parent was put on the ready list.
local function notify_parent(parent, state, ready, id, step, iter, status, payload)
  if redis.call('HGET', parent, 'status') ~= 'running' then return false end
  redis.call('HDEL', state, 'c:' .. id)
  redis.call('HINCRBY', state, 'active', -1)
  if status == 'succeeded' then
    if iter and iter ~= '' then
      redis.call('HSET', state, 'i:' .. step .. ':' .. iter, payload)
      redis.call('HINCRBY', state, 'd:' .. step, 1)
    else
      redis.call('HSET', state, 'r:' .. step, payload)
    end
  elseif redis.call('HEXISTS', state, 'failed') == 0 then
    local label = step
    if iter and iter ~= '' then label = step .. '[' .. iter .. ']' end
    redis.call('HSET', state, 'failed', 'step ' .. label .. ' ' .. status .. ': ' .. (payload or ''))
  end
  local drive = redis.call('HGET', parent, 'drive')
  if drive == 'parked' then
    redis.call('HSET', parent, 'drive', 'queued')
    redis.call('RPUSH', ready, redis.call('HGET', parent, 'entry'))
    return true
  end
  redis.call('HSET', parent, 'dirty', '1')
  return false
end
