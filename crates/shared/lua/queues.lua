-- queues.lua: helpers prepended to every script, after records.lua, for the
-- per-tag queues. It is not run on its own, so it has no KEYS or ARGV of its
-- own.
--
-- Every job has a tag ("default" unless its script or flow names another),
-- and a worker admits only jobs of its tags. Each tag T has its own
--   ready:T    list of entries ready to run, FIFO
--   delayed:T  zset of entries due at a known Unix ms (delayed jobs,
--              retries, waiters at their reserved slot, "wake <K>")
--   marker:T   list: a wake-up token for idle workers of T (BLPOP)
-- so that work of one tag costs a worker of another nothing: it never reads
-- those keys and is never woken for them. Limits stay global: a key's slots
-- and wait list are shared by the jobs of every tag, and settle() hands a
-- freed slot to the key's next waiter whatever its tag, through that
-- waiter's own delayed set.
--
-- A script must be able to write to the queue of any job it touches, so
-- every call declares the queues of every registered tag (records.lua); a
-- script that may write to a queue first checks, with stale_tags(), that the
-- caller knew the registry as it is. A caller that did not gets the error
-- STALE_TAGS before anything is written, reads the registry and calls again.

local DEFAULT_TAG = 'default'
local STALE_TAGS = 'STALETAGS the tags registry changed: read it again'

-- Whether the caller declared fewer tags than are registered now (tags are
-- only ever added, so an equal count means the same set), or none at all:
-- every process that reads the registry registers the default tag, so a
-- caller that declares none has not read it.
local function stale_tags()
  return #QUEUE_TAGS == 0 or redis.call('SCARD', TAGS) ~= #QUEUE_TAGS
end

-- The queues of a tag. A tag no process registered (only a hand-edited spec
-- names one) falls back on the default tag's queues, or the first declared.
local function queue(tag)
  return QUEUES[tag] or QUEUES[DEFAULT_TAG] or QUEUES[QUEUE_TAGS[1]]
end

-- A job's tag, read off its spec's head (a `"tag":"<t>"` field before its
-- args; absent for the default tag) without decoding it.
local function tag_of(id)
  local s = raw_spec(id)
  if not s then return DEFAULT_TAG end
  local p = string.find(s, ',"tag":"', 1, true)
  if not p then return DEFAULT_TAG end
  local cut = string.find(s, ',"args":', 1, true)
  if cut and p > cut then return DEFAULT_TAG end
  return string.match(s, '^([%w_.%-]+)"', p + 8) or DEFAULT_TAG
end

-- The queues of a job's tag.
local function queue_of(id)
  return queue(tag_of(id))
end

local function delayed_head(delayed)
  local d = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if d[2] then return tonumber(d[2]) end
  return nil
end

-- Workers sleep until the earliest delayed entry of their tags. Before the
-- first entry this call adds to a tag's delayed set, that set's head is
-- noted (unless note_heads() noted it earlier); flush_queues() then wakes
-- one idle worker of the tag if the head moved earlier, so that it looks
-- again and resets its timer.
local function note_head(q)
  if q.head_before == nil then q.head_before = delayed_head(q.delayed) or false end
end

-- Notes the head of every declared tag's delayed set now: for scripts that
-- first take entries off (admit.lua) or free slots, so that "earlier" is
-- judged against what workers last saw.
local function note_heads()
  for _, t in ipairs(QUEUE_TAGS) do note_head(QUEUES[t]) end
end

-- Adds entries to a tag's ready list (RPUSH, in order); its idle workers
-- are woken by flush_queues().
local function push_ready(q, entries)
  if #entries == 0 then return end
  redis.call('RPUSH', q.ready, unpack(entries))
  q.pushed = true
end

-- Adds entry at `at` (Unix ms) to a tag's delayed set; `mode` is nil or an
-- option of ZADD such as 'LT' (keep an earlier time already set).
local function push_delayed(q, at, entry, mode)
  note_head(q)
  if mode then
    redis.call('ZADD', q.delayed, mode, at, entry)
  else
    redis.call('ZADD', q.delayed, at, entry)
  end
  q.added = true
end

-- Adds score/entry pairs to a tag's delayed set.
local function push_delayed_pairs(q, pairs_)
  if #pairs_ == 0 then return end
  note_head(q)
  redis.call('ZADD', q.delayed, unpack(pairs_))
  q.added = true
end

-- A wake-up token for one idle worker of a tag, unless one is waiting already.
local function wake_tag(q)
  if redis.call('LLEN', q.marker) == 0 then redis.call('LPUSH', q.marker, '1') end
end

-- Wakes, per tag, one idle worker when ready entries were pushed or the
-- delayed set's head moved earlier, unless the calling worker, with room,
-- times that head itself (next_in_ms, run first by admit.lua). Called once
-- at the end of a script.
local function flush_queues()
  for _, t in ipairs(QUEUE_TAGS) do
    local q = QUEUES[t]
    if q.pushed then
      wake_tag(q)
    elseif q.added and not q.timed_here then
      local before, after = q.head_before, delayed_head(q.delayed)
      if after ~= nil and (not before or after < before) then wake_tag(q) end
    end
    q.pushed, q.added, q.head_before, q.timed_here = nil, nil, nil, nil
  end
end

-- ms until the next moment a worker should look again, or -1 for none: what
-- its timer should wait for (the next delayed entry of its tags, or lease
-- deadline). Relative, so no worker clock is involved. `has_room`: whether
-- the calling worker has room left after this call. Such a worker times its
-- tags' next delayed entries itself, so a head that this call moved earlier
-- wakes no idle worker (flush_queues): an opening then costs the one
-- worker that handed the slot on a call when it comes, not a call from an
-- idle worker now and another then. Returns the ms and the entries this
-- worker times, whose keys it declares in the call it makes then.
local function next_in_ms(served, now, has_room)
  local next_at, timed = nil, {}
  for _, q in ipairs(served) do
    local d = redis.call('ZRANGE', q.delayed, 0, 0, 'WITHSCORES')
    local h = tonumber(d[2])
    if h ~= nil then
      if has_room then
        timed[#timed + 1] = d[1]
        q.timed_here = true
      end
      if next_at == nil or h < next_at then next_at = h end
    end
  end
  local l = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
  if l[2] and (next_at == nil or tonumber(l[2]) < next_at) then next_at = tonumber(l[2]) end
  if next_at == nil then return -1, timed end
  return math.max(0, next_at - now), timed
end
