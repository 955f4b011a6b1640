-- jobs.lua: helpers prepended to every script, after records.lua and
-- slots.lua, for the scripts that write new jobs (enqueue.lua, and drive.lua
-- for a flow's steps) and those that tell a flow that one of its steps has
-- finished.

-- Values per job in the ARGV of a script that writes jobs: id, delay_ms,
-- ckey ("" for none), max, window_ms, and the spec after its created_at:
-- '"path":...,"args":...}' (see NewJob::spec_tail in job.rs).
local JOB_ARGS = 6

-- What a batch of new jobs writes, gathered to be sent by flush_jobs().
local function new_jobs(now_s)
  return { specs = {}, ready = {}, delayed = {}, limits_seen = {}, n = 0, fresh = 'queued 0 ' .. now_s }
end

-- Adds the job whose values start at ARGV[a + 1]; idx_key is idx:key:K for
-- its concurrency key (unused without one).
local function write_job(acc, idx_key, a, now, now_s)
  local id, ckey = ARGV[a + 1], ARGV[a + 3]
  local specs = acc.specs
  specs[#specs + 1] = id
  specs[#specs + 1] = '{"created_at":' .. now_s .. ',' .. ARGV[a + 6]
  acc.n = acc.n + 1
  if ckey == '' and ARGV[a + 2] == '0' then
    -- The common case, kept to the fewest Lua operations: ready now, no key.
    put_state(id, acc.fresh)
    acc.ready[#acc.ready + 1] = id
    return
  end
  local delay_ms = tonumber(ARGV[a + 2])
  local entry = make_entry(id, ckey)
  if ckey ~= '' then
    redis.call('ZADD', idx_key, now_s, id)
    local stamp = ARGV[a + 4] .. ' ' .. ARGV[a + 5]
    if acc.limits_seen[ckey] ~= stamp then
      acc.limits_seen[ckey] = stamp
      redis.call('HSET', LIMITS, ckey, stamp)
    end
  end
  if delay_ms > 0 then
    local at = ms_str(now + delay_ms)
    set_state(id, 'scheduled', 0, at)
    acc.delayed[#acc.delayed + 1] = at
    acc.delayed[#acc.delayed + 1] = entry
  else
    put_state(id, acc.fresh)
    acc.ready[#acc.ready + 1] = entry
  end
end

local function flush_jobs(acc)
  if #acc.specs > 0 then redis.call('HSET', JOBS, unpack(acc.specs)) end
  if #acc.ready > 0 then redis.call('RPUSH', READY, unpack(acc.ready)) end
  if #acc.delayed > 0 then redis.call('ZADD', DELAYED, unpack(acc.delayed)) end
  if acc.n > 0 then redis.call('HINCRBY', STATS, 'active', acc.n) end
end

-- A step of a flow reached a final state: record it in the flow's state hash
-- (fstate) and get the flow driven again. A parked flow goes back on the
-- ready list; one whose driver is queued or running is marked dirty, and its
-- driver looks again before it parks. Returns true when the flow was put on
-- the ready list.
local function notify_parent(parent, fstate, id, step, iter, status, payload)
  local p = state_of(parent)
  if not p or p.status ~= 'running' then return false end
  redis.call('HDEL', fstate, 'c:' .. id)
  redis.call('HINCRBY', fstate, 'active', -1)
  if status == 'succeeded' then
    if iter ~= nil then
      redis.call('HSET', fstate, 'i:' .. step .. ':' .. iter, payload)
      redis.call('HINCRBY', fstate, 'd:' .. step, 1)
    else
      redis.call('HSET', fstate, 'r:' .. step, payload)
    end
  elseif redis.call('HEXISTS', fstate, 'failed') == 0 then
    local label = step
    if iter ~= nil then label = step .. '[' .. iter .. ']' end
    redis.call('HSET', fstate, 'failed', 'step ' .. label .. ' ' .. status .. ': ' .. (payload or ''))
  end
  local entry = redis.call('HGET', fstate, 'entry')
  if p.words.drive == 'parked' and entry then
    p.words.drive = 'queued'
    set_state(parent, p.status, p.attempt, p.at, p.words)
    redis.call('RPUSH', READY, entry)
    return true
  end
  p.words.dirty = true
  set_state(parent, p.status, p.attempt, p.at, p.words)
  return false
end

-- Tells a step's flow that the step ended, if the job is a flow's step.
-- fstate_of(parent) names the flow's state hash as the caller declared it.
local function notify_if_step(id, fstate_of, status, payload)
  local spec = spec_of(id)
  if not spec or type(spec.parent) ~= 'string' or spec.parent == '' then return false end
  local fstate = fstate_of(spec.parent)
  if not fstate then return false end
  return notify_parent(spec.parent, fstate, id, spec.step, spec.iter, status, payload)
end
