-- slots.lua: helpers prepended to every script that holds or frees concurrency
-- slots. It is not run on its own, so it has no KEYS or ARGV of its own.
--
-- Per concurrency key K (see keys.rs):
--   running  K's executions running now, counted in a namespace hash
--            (held.lua): each holds one open-ended slot.
--   slots:K  sorted set of the other slots held. Member "<id>#<attempt>" for
--            an ended execution within its window ("<id>#f" for a flow
--            run's), "<id>#r" for a slot
--            reserved for a waiting job that will be admitted when its
--            delayed entry falls due. Score: +inf while the slot is held
--            open-ended (reserved), else the Unix ms at which it frees (end
--            of execution + that job's window).
--   wait:K   list, FIFO, of "<id> <max>" for jobs whose key is full of
--            open-ended slots, so the moment they may run is not known yet.
-- The slots K holds are its running count plus the members of slots:K.
-- Invariant kept by settle(): while wait:K is not empty, every slot of K that
-- frees at a known time has already been handed to a waiter, so each waiting
-- job is moved exactly once from wait:K to the delayed set, at the exact
-- moment its slot frees.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A spec without max_attempts has the default: it is stamped only when the
-- script's config sets another, to keep queued jobs small.
local DEFAULT_MAX_ATTEMPTS = 3

local function max_attempts(v)
  return tonumber(v) or DEFAULT_MAX_ATTEMPTS
end

-- Whole ms as a string, formatted once: a Lua number handed to redis.call is
-- formatted with %.17g every time, which shows up in profiles.
local function ms_str(ms)
  return string.format('%d', ms)
end

local function expire_slots(slots, now)
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
end

-- A key's slots set lives only while it holds something: a reserved slot
-- keeps it (PERSIST), and once only timed slots are left it expires with
-- the last of them (see bound_slots). So a key nobody uses leaves nothing
-- behind beyond its window.
local function hold_open(slots, token)
  redis.call('ZADD', slots, '+inf', token)
  redis.call('PERSIST', slots)
end

-- After slots were freed: if only timed slots are left, the set expires
-- when the last one frees. (An empty set is gone already.)
local function bound_slots(slots)
  local last = redis.call('ZRANGE', slots, -1, -1, 'WITHSCORES')
  if last[2] ~= nil and last[2] ~= 'inf' then
    redis.call('PEXPIREAT', slots, math.floor(tonumber(last[2])) + 1)
  end
end

-- The earliest slot that frees at a known time, as {member, score}, or nil.
local function first_timed_slot(slots)
  local first = redis.call('ZRANGEBYSCORE', slots, '-inf', '(+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if first[1] == nil then return nil end
  return first
end

-- A paused key (a job's Retry-After, `sluice pause`) has a member "pause"
-- in its slots set, scored at the Unix ms the pause ends. It is no slot:
-- while it is ahead, no job of the key is admitted and no waiter is handed a
-- slot; once passed, expire_slots removes it like a slot that freed. No job
-- token can take its name (tokens start with a 36-byte id).
local PAUSE = 'pause'

-- When the key's pause ends, if it is paused now.
local function paused_until(slots, now)
  local p = tonumber(redis.call('ZSCORE', slots, PAUSE))
  if p and p > now then return p end
  return nil
end

-- A limit set at run time (`sluice limits set`) overrides the stamped limit
-- of every job of its key, waiting or future: a field of the limits
-- registry named by the key after a unit separator (OVERRIDE_MARK, \31,
-- which no key holds), "<max> <window_ms>". Returns max, window_ms, or nil.
local function override_of(ckey)
  local v = redis.call('HGET', LIMITS, OVERRIDE_MARK .. ckey)
  if not v then return nil end
  local m, w = string.match(v, '^(%d+) (%d+)$')
  if not m or tonumber(m) < 1 then return nil end
  return tonumber(m), tonumber(w)
end

-- A key that has just been paused, or whose limit was just set, takes back
-- the slots it had reserved for waiters: they go back to the head of its
-- wait list, in the order they were due (before any other waiter: they were
-- first in line), and are handed slots again, in that order, by settle
-- (at once, or when the pause ends). They stay waiting. The slot each had
-- taken over stays held until it would have freed (`<id>#c`), so no window
-- is cut short.
local function take_back_reservations(slots, wait, ckey)
  local now = now_ms()
  local back = {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', slots, '+inf', '+inf')) do
    if string.sub(m, -2) == '#r' then
      local id = string.sub(m, 1, 36)
      local entry = make_entry(id, ckey)
      local q = queue_of(id)
      local due = tonumber(redis.call('ZSCORE', q.delayed, entry)) or 0
      local spec = spec_of(id)
      back[#back + 1] = { m = m, id = id, entry = entry, due = due, max = (spec and spec.max) or 1, delayed = q.delayed }
    end
  end
  table.sort(back, function(a, b) return a.due < b.due end)
  for i = #back, 1, -1 do
    local b = back[i]
    redis.call('ZREM', slots, b.m)
    if b.due > now then redis.call('ZADD', slots, b.due, b.id .. '#c') end
    redis.call('ZREM', b.delayed, b.entry)
    redis.call('LPUSH', wait, b.id .. ' ' .. b.max)
  end
end

-- When a job became ready, and its id, as the order of a key's line: a
-- waiting job keeps the moment it had (records.lua).
local function line_place(id)
  local st = state_of(id)
  if not st then return 0 end
  return tonumber(st.words.ready or st.at) or 0
end

-- Whether (ready, id) comes before (ready2, id2): by the moment each became
-- ready, then by id (ids are UUIDv7, so a batch keeps its order).
local function before(ready, id, ready2, id2)
  return ready < ready2 or (ready == ready2 and id < id2)
end

-- How far back from the tail of a key's line a job that arrives late is
-- moved: it bounds what one arrival costs Redis (a state read per waiter
-- passed), whatever the line's length.
local LINE_LOOKBACK = 200

-- Puts a job in its key's line, "<id> <max>", in the order the jobs became
-- ready. Jobs of one tag reach their key in that order, so the common case
-- is a push at the tail; a job of another tag, whose workers took it later,
-- goes before the waiters that became ready after it, among the last
-- LINE_LOOKBACK of the line: a key shared by several tags stays FIFO as
-- long as no tag's workers lag that far behind.
local function wait_in_line(wait, id, max, ready)
  local item = id .. ' ' .. max
  local tail = redis.call('LINDEX', wait, -1)
  if not tail or not before(ready, id, line_place(string.sub(tail, 1, 36)), string.sub(tail, 1, 36)) then
    redis.call('RPUSH', wait, item)
    return
  end
  -- After the last waiter not behind it, looking back from the tail.
  local page = redis.call('LRANGE', wait, -LINE_LOOKBACK, -1)
  for j = #page - 1, 1, -1 do
    local wid = string.sub(page[j], 1, 36)
    if not before(ready, id, line_place(wid), wid) then
      redis.call('LINSERT', wait, 'AFTER', page[j], item)
      return
    end
  end
  -- Ahead of all those looked at: at the head of a short line, or right
  -- before the first looked at.
  if #page < LINE_LOOKBACK then
    redis.call('LPUSH', wait, item)
  else
    redis.call('LINSERT', wait, 'BEFORE', page[1], item)
  end
end

-- Asks for a key's waiters to be looked at again at `at`: a "wake <K>"
-- entry in the delayed set of the tag of the key's first waiter, so that
-- only workers that could run it are woken. Nothing waits: nothing to do.
local function wake_key_at(wait, ckey, at)
  local head = redis.call('LINDEX', wait, 0)
  if not head then return end
  push_delayed(queue_of(string.sub(head, 1, 36)), at, 'wake ' .. ckey, 'LT')
end

-- Hand free or soon-free capacity of one key to its waiters, in FIFO order.
-- Each waiter gets a reserved slot and an entry, at the moment it may run,
-- in its own tag's delayed set. A paused key hands out nothing: its waiters
-- are looked at when it ends.
local function settle(slots, wait, ckey, now)
  touch_key(ckey, slots, wait)
  local until_ = paused_until(slots, now)
  if until_ then
    wake_key_at(wait, ckey, until_)
    return
  end
  local override_max = nil
  while true do
    local head = redis.call('LINDEX', wait, 0)
    if not head then return end
    -- Read once there is a waiter: a limit set at run time wins over the
    -- one stamped on the job.
    if override_max == nil then override_max = override_of(ckey) or false end
    local hid = string.sub(head, 1, 36)
    local hmax = override_max or tonumber(string.sub(head, 38))
    local held = redis.call('ZCARD', slots) + held_count(ckey)
    local at = nil
    if held < hmax then
      at = now
    else
      local first = first_timed_slot(slots)
      -- Only open-ended slots: the next end of an execution settles again.
      if first == nil then return end
      if held > hmax then
        -- The head was stamped with a lower max than the slots held: look
        -- again when the earliest slot frees.
        wake_key_at(wait, ckey, first[2])
        return
      end
      redis.call('ZREM', slots, first[1])
      at = tonumber(first[2])
    end
    redis.call('LPOP', wait)
    hold_open(slots, hid .. '#r')
    push_delayed(queue_of(hid), at, make_entry(hid, ckey))
  end
end

-- An execution ended (any outcome): it no longer runs, its slot stays held
-- for its window (as `token` in slots:K), then the key's waiters are
-- settled. A key with no window and nothing of its own only counts one
-- fewer running: nothing else can be waiting on it.
local function end_slot(slots, wait, ckey, token, window_ms, now)
  running_add(ckey, -1)
  local structured = is_structured(ckey)
  if structured then
    local _, override_window = override_of(ckey)
    if override_window then window_ms = override_window end
  end
  if window_ms > 0 then
    redis.call('ZADD', slots, now + window_ms, token)
  elseif not structured then
    return
  end
  expire_slots(slots, now)
  settle(slots, wait, ckey, now)
  bound_slots(slots)
end

-- Final states move the namespace counters that `sluice wait` reads, and
-- index the job for `sluice runs` and retention. Both are gathered per call
-- and written once per call, by flush_finished.
local final_counts = {}
local by_status = {}
local waiting_delta = 0

-- A job entered (+1) or left (-1) the waiting state: the `waiting` counter
-- behind the waiting-on-limits metric.
local function count_waiting(d)
  waiting_delta = waiting_delta + d
end

-- A job reached a final status: counted, and its entry (its id, and its
-- concurrency key when it has one: make_entry in records.lua) appended to
-- that status's index, which is so in the order jobs finish. The key in the
-- entry is what lists a key's finished jobs (`runs --concurrency-key`)
-- without an index written per job at enqueue.
local function finish(status, entry)
  final_counts[status] = (final_counts[status] or 0) + 1
  local t = by_status[status]
  if t == nil then
    t = {}
    by_status[status] = t
  end
  t[#t + 1] = entry
end

local function flush_finished()
  local total = 0
  for status, n in pairs(final_counts) do
    redis.call('HINCRBY', STATS, status, n)
    total = total + n
  end
  if total > 0 then redis.call('HINCRBY', STATS, 'active', -total) end
  if waiting_delta ~= 0 then redis.call('HINCRBY', STATS, 'waiting', waiting_delta) end
  for status, entries in pairs(by_status) do redis.call('RPUSH', IDX[status], unpack(entries)) end
  final_counts, by_status, waiting_delta = {}, {}, 0
end
