-- jobs.lua: helpers prepended to every script, after records.lua and
-- slots.lua, for the scripts that write new jobs (enqueue.lua, and drive.lua
-- for a flow's steps) and those that tell a flow that one of its steps has
-- finished.

-- Values per job in the ARGV of a script that writes jobs: id, delay_ms,
-- ckey ("" for none), max, window_ms, its tag, and the spec after its
-- created_at: '"path":...,"args":...}' (see NewJob::spec_tail in job.rs).
local JOB_ARGS = 7

-- What a batch of new jobs writes, gathered to be sent by flush_jobs():
-- ready[tag] and delayed[tag] are the entries for each tag's queues.
local function new_jobs(now_s)
  return { specs = {}, ready = {}, delayed = {}, n = 0, fresh = 'queued 0 ' .. now_s, fresh_with = {} }
end

-- The state of a keyed job ready now: the fresh state and the limit it is
-- stamped with (its spec's max and window_ms), which admit.lua reads from
-- here with one table lookup per batch (state_limit in held.lua) instead of
-- searching each job's spec. One string per stamp and batch.
local function fresh_stamped(acc, max, window_ms)
  local stamp = max .. '/' .. window_ms
  local s = acc.fresh_with[stamp]
  if s == nil then
    s = acc.fresh .. ' limit=' .. stamp
    acc.fresh_with[stamp] = s
  end
  return s
end

-- The list of acc's entries for `tag` in `what` (acc.ready or acc.delayed).
local function tag_list(what, tag)
  local l = what[tag]
  if l == nil then
    l = {}
    what[tag] = l
  end
  return l
end

-- Whether each of n jobs, the i-th of which write_job would be given at
-- a = a0 + per * (i - 1), names a tag this call declared: checked before
-- anything is written, so a batch lands whole or not at all. Returns the
-- first unknown tag, or nil.
local function unknown_tag(a0, per, n)
  for i = 1, n do
    local tag = ARGV[a0 + per * (i - 1) + 6]
    if not QUEUES[tag] then return tag end
  end
  return nil
end

-- Adds the job whose values start at ARGV[a + 1].
local function write_job(acc, a, now, now_s)
  local id, ckey, tag = ARGV[a + 1], ARGV[a + 3], ARGV[a + 6]
  local specs = acc.specs
  specs[#specs + 1] = id
  specs[#specs + 1] = '{"created_at":' .. now_s .. ',' .. ARGV[a + 7]
  acc.n = acc.n + 1
  if ckey == '' and ARGV[a + 2] == '0' then
    -- The common case, kept to the fewest Lua operations: ready now, no key.
    put_state(id, acc.fresh)
    local r = tag_list(acc.ready, tag)
    r[#r + 1] = id
    return
  end
  local delay_ms = tonumber(ARGV[a + 2])
  local entry = make_entry(id, ckey)
  if delay_ms > 0 then
    local at = ms_str(now + delay_ms)
    set_state(id, 'scheduled', 0, at)
    local d = tag_list(acc.delayed, tag)
    d[#d + 1] = at
    d[#d + 1] = entry
  else
    if ckey ~= '' then put_state(id, fresh_stamped(acc, ARGV[a + 4], ARGV[a + 5])) else put_state(id, acc.fresh) end
    local r = tag_list(acc.ready, tag)
    r[#r + 1] = entry
  end
end

-- Calls f on the list, or on slices of it when it is too long for one
-- unpack() (Lua's limit is 7,999 values).
local function in_slices(list, f)
  if #list <= 4000 then return f(list) end
  for i = 1, #list, 4000 do f({ unpack(list, i, math.min(i + 3999, #list)) }) end
end

-- Writes what write_job gathered. Entries go to their tag's queues; a tag
-- this call did not declare was refused before (unknown_tag).
local function flush_jobs(acc)
  if #acc.specs > 0 then hset_pairs(JOBS, acc.specs) end
  for tag, entries in pairs(acc.ready) do
    in_slices(entries, function(l) push_ready(queue(tag), l) end)
  end
  for tag, pairs_ in pairs(acc.delayed) do
    in_slices(pairs_, function(l) push_delayed_pairs(queue(tag), l) end)
  end
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
    push_ready(queue_of(parent), { entry })
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
  if fstate == HANDOFF then
    -- The run lives in another partition: the end waits here, written with
    -- the step's own end, until step_end.lua records it there.
    redis.call('HSET', HANDOFF, 'end:' .. id, cjson.encode({
      p = spec.parent, s = spec.step, i = spec.iter, st = status, pl = payload or '' }))
    return false
  end
  return notify_parent(spec.parent, fstate, id, spec.step, spec.iter, status, payload)
end
